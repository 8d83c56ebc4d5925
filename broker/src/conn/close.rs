//! Close codes Gangway sends, and why. Documented in README.md ("Close codes").

/// Normal closure: `DELETE @connections/{id}` without a code, as on AWS.
pub const NORMAL: u16 = 1000;
/// Going away: idle timeout, maximum duration reached, or the node shutting down.
pub const GOING_AWAY: u16 = 1001;
/// Protocol error in the client's frames.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Binary frame while `reject_binary_frames` is on (AWS parity).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Status code absent in the client's close frame (reported in `$disconnect`, never sent).
pub const NO_STATUS: u16 = 1005;
/// Connection dropped without a close frame (reported in `$disconnect`, never sent).
pub const ABNORMAL: u16 = 1006;
/// Text frame that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation: the client could not keep up (its outbound queue filled) or sent too fast.
pub const SLOW_CONSUMER: u16 = 1008;
/// Frame or message larger than `max_frame_bytes` / `max_message_bytes`.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Service restart: this node lost Redis while its peers still reach it (fenced), so its
/// clients should reconnect, through the load balancer, to a node the cluster can reach.
pub const SERVICE_RESTART: u16 = 1012;

/// True for codes a control-API caller may choose: 1000, or 3000–4999.
pub fn is_user_code(code: u16) -> bool {
    code == NORMAL || (3000..=4999).contains(&code)
}
