//! Payload codecs: how an event's payload bytes are made from and turned back into a value.
//!
//! Every stored record carries a codec byte ([`CodecId`]), so the default codec can change
//! later without rewriting history: old events keep decoding with the codec they were written
//! with.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The most memory a bincode payload may claim while decoding (64 MiB).
pub const DECODE_LIMIT: usize = 64 * 1024 * 1024;

/// The codec a payload was encoded with, as stored in its record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CodecId(pub u8);

impl CodecId {
    /// Opaque bytes chosen by the caller; annals never decodes them.
    pub const RAW: CodecId = CodecId(0);
    /// serde through bincode 2.0.1 with `bincode::config::standard()` (the default).
    pub const BINCODE: CodecId = CodecId(1);
    /// serde through serde_json (UTF-8 JSON text).
    pub const JSON: CodecId = CodecId(2);

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            CodecId::RAW => "raw",
            CodecId::BINCODE => "bincode",
            CodecId::JSON => "json",
            _ => "unknown",
        }
    }

    /// Encodes `value` with this codec.
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails or the codec is [`CodecId::RAW`] or unknown.
    pub fn encode<T: Serialize + ?Sized>(
        self,
        event_type: &str,
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        let fail = |reason: String| Error::Codec {
            action: crate::CodecAction::Encode,
            event_type: event_type.to_owned(),
            reason,
        };
        match self {
            CodecId::BINCODE => bincode::serde::encode_to_vec(value, bincode::config::standard())
                .map_err(|e| fail(e.to_string())),
            CodecId::JSON => serde_json::to_vec(value).map_err(|e| fail(e.to_string())),
            other => Err(fail(format!("codec {} cannot encode values", other.name()))),
        }
    }

    /// Decodes `bytes` with this codec. Trailing bytes are an error.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes do not decode into `T` or the codec is unknown.
    pub fn decode<T: DeserializeOwned>(self, event_type: &str, bytes: &[u8]) -> Result<T, Error> {
        let fail = |reason: String| Error::Codec {
            action: crate::CodecAction::Decode,
            event_type: event_type.to_owned(),
            reason,
        };
        match self {
            CodecId::BINCODE => {
                // The limit caps what length prefixes may claim: a damaged or hostile payload
                // must be an error, not an allocation that aborts the process. It does not
                // change the wire format.
                let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
                let (value, read) = bincode::serde::decode_from_slice(bytes, config)
                    .map_err(|e| fail(e.to_string()))?;
                if read != bytes.len() {
                    return Err(fail(format!(
                        "{} trailing bytes after the value",
                        bytes.len() - read
                    )));
                }
                Ok(value)
            }
            CodecId::JSON => serde_json::from_slice(bytes).map_err(|e| fail(e.to_string())),
            other => Err(fail(format!("codec {} cannot decode values", other.name()))),
        }
    }
}

impl Default for CodecId {
    fn default() -> Self {
        CodecId::BINCODE
    }
}

impl fmt::Debug for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Deposited {
        amount: u64,
        note: String,
    }

    #[test]
    fn round_trips() {
        let v = Deposited {
            amount: 5,
            note: "hi".into(),
        };
        for codec in [CodecId::BINCODE, CodecId::JSON] {
            let bytes = codec.encode("Deposited", &v).unwrap();
            let back: Deposited = codec.decode("Deposited", &bytes).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        let r: Result<Deposited, _> = CodecId::BINCODE.decode("Deposited", &[0xff, 0xff, 0xff]);
        assert!(matches!(
            r,
            Err(Error::Codec {
                action: crate::CodecAction::Decode,
                ..
            })
        ));
        let r: Result<u8, _> = CodecId::BINCODE.decode("X", &[1, 2]);
        assert!(matches!(r, Err(Error::Codec { .. })), "trailing bytes");
        let r: Result<u8, _> = CodecId(77).decode("X", &[1]);
        assert!(matches!(r, Err(Error::Codec { .. })));
    }

    /// A length prefix claiming exabytes is a typed error, not an aborting allocation.
    #[test]
    fn huge_length_prefixes_are_errors() {
        let bytes = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F];
        let r: Result<String, _> = CodecId::BINCODE.decode("X", &bytes);
        assert!(matches!(r, Err(Error::Codec { .. })));
        let r: Result<Vec<u64>, _> = CodecId::BINCODE.decode("X", &bytes);
        assert!(matches!(r, Err(Error::Codec { .. })));
    }

    /// The bincode wire format is part of the stored format: pin a known encoding.
    #[test]
    fn bincode_bytes_are_stable() {
        let v = Deposited {
            amount: 300,
            note: "ab".into(),
        };
        let bytes = CodecId::BINCODE.encode("Deposited", &v).unwrap();
        assert_eq!(bytes, vec![251, 44, 1, 2, b'a', b'b']);
    }
}
