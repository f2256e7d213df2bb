//! One file per Kafka API: decode, delegate, encode. Shared here: decoding a request
//! body and encoding a response body with the version the client asked for.

pub mod api_versions;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::{Error, Result};

/// Decodes a request body; a body that does not decode is [`Error::Malformed`].
pub fn decode<T: Decodable>(body: &mut Bytes, api_key: i16, api_version: i16) -> Result<T> {
    T::decode(body, api_version).map_err(|e| Error::Malformed {
        api_key,
        api_version,
        reason: e.to_string(),
    })
}

/// Encodes a response body as one part.
pub fn encode<T: Encodable>(response: &T, api_key: i16, api_version: i16) -> Result<Vec<Bytes>> {
    let err = |e: &dyn std::fmt::Display| Error::Encode {
        api_key,
        reason: e.to_string(),
    };
    let size = response.compute_size(api_version).map_err(|e| err(&e))?;
    let mut buf = BytesMut::with_capacity(size);
    response
        .encode(&mut buf, api_version)
        .map_err(|e| err(&e))?;
    Ok(vec![buf.freeze()])
}
