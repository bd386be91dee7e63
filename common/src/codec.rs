//! The project's one binary codec: bincode 2 (standard config) over serde.
//!
//! Every Raft RPC body, log entry and snapshot goes through here, so a format
//! change happens in one place. Decoding is bounded by [`MAX_DECODE_BYTES`] and
//! refuses trailing bytes: a body is either exactly one value or an error.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Upper bound on what one decode may allocate. Larger than any body a node
/// accepts (see the HTTP body limits), small enough that a corrupt length
/// prefix cannot exhaust memory.
pub const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode failed: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode failed: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("decode failed: {trailing} trailing bytes after the value")]
    Trailing { trailing: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// The length [`encode`] would produce, without allocating the bytes.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config())?;
    Ok(size.bytes_written)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trips_nested_values() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), vec![1u64, 2, 3]);
        m.insert("b".to_string(), vec![]);
        let bytes = encode(&(7u32, Some("x".to_string()), m.clone())).unwrap();
        let back: (u32, Option<String>, BTreeMap<String, Vec<u64>>) = decode(&bytes).unwrap();
        assert_eq!(back, (7, Some("x".to_string()), m));
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let value = (300u64, "query-1".to_string(), vec![Some(1u8), None]);
        assert_eq!(encoded_len(&value).unwrap(), encode(&value).unwrap().len());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&5u64).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u64>(&bytes),
            Err(CodecError::Trailing { trailing: 1 })
        ));
    }

    #[test]
    fn rejects_truncated_and_garbage_input() {
        let bytes = encode(&"hello".to_string()).unwrap();
        assert!(decode::<String>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode::<Vec<String>>(&[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A varint claiming a ~2^60-byte string must fail fast on the limit.
        let bytes = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<String>(&bytes).is_err());
    }

    /// The validated resource-group tree goes into the Raft log.
    #[test]
    fn the_validated_resource_group_tree_survives_the_codec() {
        let text = include_str!("../../docs/examples/resource-groups.json");
        let rg =
            crate::resource_groups::parse(text, &crate::resource_groups::Consistency::Linearizable)
                .unwrap();
        let bytes = encode(&rg.roots).unwrap();
        let back: Vec<crate::resource_groups::GroupSpec> = decode(&bytes).unwrap();
        assert_eq!(back, rg.roots);
    }
}
