//! The `mock` integration: answers in-process — echoes each message, or sends the route's fixed
//! `response` — and lets every client in (a `$connect` `response` may carry `context` and
//! `channels`). It never calls anything, so `$disconnect` has nothing to deliver.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::frame;
use crate::integration::{Answer, Call, Integration, IntegrationError};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Mock {
    /// Fixed answer; `None` echoes.
    response: Option<Bytes>,
}

impl Mock {
    /// A mock answering `response`, or echoing without one.
    pub fn new(response: Option<Bytes>) -> Self {
        Mock { response }
    }

    fn answer(&self) -> Answer {
        Answer {
            status: 200,
            subprotocol: None,
            body: self.response.clone().unwrap_or_default(),
        }
    }
}

impl Integration for Mock {
    fn connect<'a>(&'a self, _call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(std::future::ready(Ok(self.answer())))
    }

    fn answer_now(&self, message: &Message) -> Option<Bytes> {
        Some(match (&self.response, message) {
            (Some(fixed), _) => frame::text_or_binary(fixed),
            (None, Message::Binary(data)) => frame::encode(frame::OPCODE_BINARY, data),
            (None, Message::Text(text)) => frame::encode(frame::OPCODE_TEXT, text.as_bytes()),
            (None, _) => return None,
        })
    }

    fn message<'a>(&'a self, _call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        // Messages are answered by `answer_now`; a deferred one gets the fixed answer.
        Box::pin(std::future::ready(Ok(self.answer())))
    }

    fn delivers_disconnect(&self) -> bool {
        false
    }

    fn disconnect<'a>(
        &'a self,
        _call: Call<'a>,
    ) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(std::future::ready(Ok(self.answer())))
    }
}
