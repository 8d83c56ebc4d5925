//! Counting the client's frames as their bytes pass to tungstenite: [`Metered`] wraps a
//! transport's read side with a [`FrameMeter`].

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport whose reads pass a [`FrameMeter`] (writes pass through untouched).
#[derive(Debug)]
pub(crate) struct Metered<T> {
    inner: T,
    meter: FrameMeter,
}

impl<T> Metered<T> {
    /// Wraps `inner`; messages of more than `max_fragments` frames are refused.
    pub(crate) fn new(inner: T, max_fragments: u32) -> Self {
        Metered {
            inner,
            meter: FrameMeter::new(max_fragments),
        }
    }

    /// The transport.
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The transport, for writes that bypass tungstenite.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// How many frames beyond one the next message tungstenite hands out took (its non-final
    /// fragments). Call once per message, in order.
    pub(crate) fn take_extra_frames(&mut self) -> u32 {
        self.meter.next_message_extra()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.meter.observe(&buf.filled()[start..])?;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A message had more frames than `max_fragments_per_message` (the read fails with this).
#[derive(Debug, thiserror::Error)]
#[error("a message of more than {0} fragments")]
pub struct TooManyFragments(pub u32);

/// Counts the client's frames as their bytes pass by, reading only frame headers (sans-IO).
///
/// tungstenite assembles fragmented messages without a bound on the number of fragments, so an
/// endless message of empty continuation frames would never end nor grow. The meter refuses a
/// message of more than `max_fragments` frames, and records for every message that completes
/// (a final data frame, or a control frame) how many frames beyond one it took, in order, so the
/// session's inbound rate limit can charge each message tungstenite hands it with its frames,
/// although tungstenite reads ahead. It does not validate frames: tungstenite does that with
/// the same bytes.
#[derive(Debug)]
pub struct FrameMeter {
    /// Header bytes of the frame being read.
    header: [u8; 14],
    have: u8,
    /// How long the current header is (2 until its second byte is known).
    need: u8,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Frames of the fragmented message in progress (0: none in progress).
    fragments: u32,
    max_fragments: u32,
    /// Extra frames of each message completed but not yet handed out, oldest first (bounded
    /// by what one read can hold; empty, it holds no memory).
    completed: VecDeque<u32>,
}

impl FrameMeter {
    /// A meter refusing messages of more than `max_fragments` frames.
    pub fn new(max_fragments: u32) -> Self {
        FrameMeter {
            header: [0; 14],
            have: 0,
            need: 2,
            remaining: 0,
            fragments: 0,
            max_fragments,
            completed: VecDeque::new(),
        }
    }

    /// Observes bytes read from the client, in order.
    pub fn observe(&mut self, mut data: &[u8]) -> Result<(), TooManyFragments> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let k = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= k as u64;
                data = &data[k..];
                continue;
            }
            let k = usize::from(self.need - self.have).min(data.len());
            let have = usize::from(self.have);
            self.header[have..have + k].copy_from_slice(&data[..k]);
            self.have += k as u8;
            data = &data[k..];
            if self.have == 2 && self.need == 2 {
                let len_bytes = match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + len_bytes + mask;
            }
            if self.have == self.need {
                self.frame_header()?;
            }
        }
        Ok(())
    }

    fn frame_header(&mut self) -> Result<(), TooManyFragments> {
        let fin = self.header[0] & 0x80 != 0;
        let opcode = self.header[0] & 0x0f;
        self.remaining = match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        self.have = 0;
        self.need = 2;
        match opcode {
            // Control frames may come between fragments; they are no part of the message, and
            // each is a message of its own to tungstenite.
            op if op & 0x08 != 0 => self.completed.push_back(0),
            // A continuation.
            0 => {
                if self.fragments > 0 {
                    self.fragments += 1;
                    if self.fragments > self.max_fragments {
                        return Err(TooManyFragments(self.max_fragments));
                    }
                }
                if fin {
                    self.completed.push_back(self.fragments.saturating_sub(1));
                    self.fragments = 0;
                }
            }
            // The first frame of a message.
            _ if fin => {
                self.fragments = 0;
                self.completed.push_back(0);
            }
            _ => self.fragments = 1,
        }
        Ok(())
    }

    /// The extra frames of the oldest completed message not yet handed out (0 if none).
    fn next_message_extra(&mut self) -> u32 {
        let extra = self.completed.pop_front().unwrap_or(0);
        if self.completed.is_empty() && self.completed.capacity() > 16 {
            self.completed = VecDeque::new();
        }
        extra
    }
}

impl From<TooManyFragments> for io::Error {
    fn from(e: TooManyFragments) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A masked client frame (also used by the session's tests).
    pub(crate) fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        const MASK: [u8; 4] = [1, 2, 3, 4];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&MASK);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        f
    }

    #[test]
    fn counts_frames_across_any_split() {
        let mut bytes = frame(1, true, b"hello");
        bytes.extend(frame(9, true, b""));
        bytes.extend(frame(2, true, &[7u8; 300]));
        bytes.extend(frame(2, false, &vec![0u8; 70_000]));
        bytes.extend(frame(0, false, b"more"));
        bytes.extend(frame(0, true, b"end"));
        for chunk in [1, 2, 3, 7, 64, 4096, bytes.len()] {
            let mut m = FrameMeter::new(4);
            for piece in bytes.chunks(chunk) {
                m.observe(piece).expect("ok");
            }
            let extras: Vec<u32> = (0..5).map(|_| m.next_message_extra()).collect();
            assert_eq!(extras, vec![0, 0, 0, 2, 0], "chunk {chunk}");
            assert_eq!((m.have, m.remaining, m.fragments), (0, 0, 0));
        }
    }

    #[test]
    fn refuses_a_message_of_too_many_fragments() {
        let mut m = FrameMeter::new(3);
        m.observe(&frame(1, false, b"a")).expect("first");
        m.observe(&frame(9, true, b""))
            .expect("a ping between fragments");
        m.observe(&frame(0, false, b"")).expect("second");
        m.observe(&frame(0, false, b"")).expect("third");
        assert!(m.observe(&frame(0, false, b"")).is_err(), "fourth");
        // A message that ends in time resets the count.
        let mut m = FrameMeter::new(3);
        for _ in 0..100 {
            m.observe(&frame(1, false, b"a")).expect("first");
            m.observe(&frame(0, false, b"b")).expect("second");
            m.observe(&frame(0, true, b"c")).expect("last");
        }
        assert_eq!(m.completed.len(), 100);
        assert!(m.completed.iter().all(|&e| e == 2));
    }
}
