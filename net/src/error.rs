//! The network layer's errors. Each says whether the connection can go on.

/// Errors of the Kafka protocol layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed the connection or the socket failed: the connection ends.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's length is negative or over `socket.request.max.bytes`: the
    /// connection is closed without reading the frame.
    #[error("frame of {len} bytes refused: the limit (socket.request.max.bytes) is {max}")]
    FrameTooLarge { len: i64, max: usize },
    /// The peer closed the connection in the middle of a frame.
    #[error("the client closed the connection after {got} of a {len}-byte frame")]
    Truncated { got: usize, len: usize },
    /// The request header or body does not decode: the connection is closed, as Kafka
    /// does, because the stream can no longer be trusted.
    #[error("malformed request (api key {api_key}, version {api_version}): {reason}")]
    Malformed {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
    /// An API key this broker does not know: the connection is closed, as Kafka does.
    #[error("unsupported api key {0}")]
    UnknownApi(i16),
    /// A response could not be encoded (a bug, not the peer's fault): the connection
    /// is closed.
    #[error("cannot encode the response to api key {api_key}: {reason}")]
    Encode { api_key: i16, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
