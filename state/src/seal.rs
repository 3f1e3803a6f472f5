//! Integrity of what the store holds: every value in every table is its payload followed by a
//! CRC-32 (IEEE, little-endian) of the table name, the key and the payload.
//!
//! redb checksums its pages, but only verifies them when a writer opens a file that needs
//! repair or asks for a full check; a plain read trusts the bytes. A flipped bit in a stored
//! JSON value would then reach a training set or a model server as a different, valid value.
//! The seal makes every read check what it returns. Covering the key and the table too means a
//! flip in a key, or a value moved to another row, fails the check as well.
//!
//! CRC-32 because it is the smallest check that catches every burst of up to 32 flipped bits in
//! a value. `crc32fast` computes it with the CPU's carry-less multiply at several GB/s, so a
//! training snapshot that checks every history block it sweeps pays little for it. It guards
//! against damage, not against a hostile writer, who could recompute it.

/// Bytes a seal adds to each value.
pub const SEAL_BYTES: usize = 4;

/// A running CRC-32 over the parts of one row. Variable-length parts are length-prefixed, so
/// ("ab", "c") and ("a", "bc") differ.
#[derive(Clone)]
pub struct Crc(crc32fast::Hasher);

impl Crc {
    /// Starts the checksum of one row of `table`.
    pub fn row(table: &str) -> Crc {
        Crc(crc32fast::Hasher::new()).part(table.as_bytes())
    }

    fn bytes(mut self, bytes: &[u8]) -> Crc {
        self.0.update(bytes);
        self
    }

    /// Adds one variable-length part (a string or byte key component).
    pub fn part(self, bytes: &[u8]) -> Crc {
        self.bytes(&(bytes.len() as u64).to_le_bytes()).bytes(bytes)
    }

    /// Adds one integer key component.
    pub fn int(self, n: u64) -> Crc {
        self.bytes(&n.to_le_bytes())
    }

    fn finish(self, payload: &[u8]) -> [u8; SEAL_BYTES] {
        self.part(payload).0.finalize().to_le_bytes()
    }

    /// `payload` followed by the seal of this row.
    pub fn seal(self, payload: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(payload.len() + SEAL_BYTES);
        sealed.extend_from_slice(payload);
        sealed.extend_from_slice(&self.finish(payload));
        sealed
    }

    /// The payload of `stored`, if its seal matches this row.
    pub fn open(self, stored: &[u8]) -> Option<&[u8]> {
        let split = stored.len().checked_sub(SEAL_BYTES)?;
        let (payload, seal) = stored.split_at(split);
        (self.finish(payload) == seal).then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_the_standard_crc32() {
        // The check value of CRC-32/ISO-HDLC, which zlib and PNG use.
        let crc = Crc(crc32fast::Hasher::new()).bytes(b"123456789");
        assert_eq!(crc.0.finalize(), 0xCBF4_3926);
    }

    #[test]
    fn a_seal_opens_only_for_its_own_row_and_payload() {
        let row = Crc::row("history").part(b"viewer.a").part(b"v_1").int(2000);
        let sealed = row.clone().seal(b"{\"x\":1}");
        assert_eq!(row.clone().open(&sealed), Some(&b"{\"x\":1}"[..]));
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert_eq!(row.clone().open(&flipped), None, "flip at {i}");
        }
        let other = Crc::row("history").part(b"viewer.a").part(b"v_1").int(3000);
        assert_eq!(other.open(&sealed), None);
        let row = Crc::row("history").part(b"viewer.a").part(b"v_1").int(2000);
        assert_eq!(Crc::row("online").open(&Crc::row("meta").seal(b"")), None);
        assert_eq!(row.open(b"abc"), None);
    }
}
