//! The binary shapes inside the file (format 3): entity ids, history blocks and online rows.
//!
//! - An entity id is a pseudonym (`v_` and 32 lowercase hex digits: kept as its 16 bytes) or
//!   any other string (kept length-prefixed). The encoding is prefix-free, so a history key
//!   (feature index big-endian, then entity) compares as bytes exactly as it does as a tuple.
//! - Integers that vary in size are LEB128 varints; times inside a block or a row are deltas.
//! - A value is `0` for "the default" (a tombstone), else its length plus one, then its bytes.
//!
//! Everything here decodes bytes that passed their seal, but decodes them as untrusted: a
//! malformed input is `None`, never a panic.

use std::fmt;

const PSEUDONYM: u8 = 0;
const NAME: u8 = 1;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// An entity id as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityId {
    /// A viewer pseudonym `v_` + 32 lowercase hex digits, as its 128-bit number.
    Pseudonym(u128),
    /// Any other id (a title id), as given.
    Name(String),
}

/// A borrowed [`EntityId`], as decoded from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityRef<'a> {
    Pseudonym(u128),
    Name(&'a str),
}

impl EntityId {
    /// The id of `id`: a pseudonym when it has exactly that shape (so it renders back to the
    /// same text), else a name.
    pub fn new(id: &str) -> EntityId {
        match parse_pseudonym(id) {
            Some(n) => EntityId::Pseudonym(n),
            None => EntityId::Name(id.to_string()),
        }
    }

    pub fn as_ref(&self) -> EntityRef<'_> {
        match self {
            EntityId::Pseudonym(n) => EntityRef::Pseudonym(*n),
            EntityId::Name(s) => EntityRef::Name(s),
        }
    }
}

impl From<&str> for EntityId {
    fn from(id: &str) -> EntityId {
        EntityId::new(id)
    }
}

impl From<String> for EntityId {
    fn from(id: String) -> EntityId {
        match parse_pseudonym(&id) {
            Some(n) => EntityId::Pseudonym(n),
            None => EntityId::Name(id),
        }
    }
}

impl<'a> EntityRef<'a> {
    /// The id of `id`, borrowed when it is a name.
    pub fn new(id: &'a str) -> EntityRef<'a> {
        match parse_pseudonym(id) {
            Some(n) => EntityRef::Pseudonym(n),
            None => EntityRef::Name(id),
        }
    }
}

/// Each ASCII byte's hex digit (lowercase only), or 0xff.
static HEX_DIGITS: [u8; 256] = {
    let mut digits = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        digits[HEX[i] as usize] = i as u8;
        i += 1;
    }
    digits
};

/// Checked and read in one pass, without a branch per digit, the two halves side by side: a
/// snapshot reads one id per label row, and a digit-by-digit parse was a tenth of a large cut.
fn parse_pseudonym(id: &str) -> Option<u128> {
    let hex: &[u8; 32] = id.as_bytes().strip_prefix(b"v_")?.try_into().ok()?;
    let (mut high, mut low, mut seen) = (0u64, 0u64, 0u8);
    for i in 0..16 {
        let (h, l) = (
            HEX_DIGITS[hex[i] as usize],
            HEX_DIGITS[hex[16 + i] as usize],
        );
        seen |= h | l;
        high = high << 4 | u64::from(h);
        low = low << 4 | u64::from(l);
    }
    (seen < 16).then_some(u128::from(high) << 64 | u128::from(low))
}

impl fmt::Display for EntityRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityRef::Pseudonym(n) => {
                let mut text = *b"v_00000000000000000000000000000000";
                for (i, byte) in n.to_be_bytes().iter().enumerate() {
                    text[2 + 2 * i] = HEX[(byte >> 4) as usize];
                    text[3 + 2 * i] = HEX[(byte & 15) as usize];
                }
                f.write_str(std::str::from_utf8(&text).expect("ASCII"))
            }
            EntityRef::Name(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

fn take_bytes<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

pub(crate) fn put_entity(out: &mut Vec<u8>, id: EntityRef<'_>) {
    match id {
        EntityRef::Pseudonym(n) => {
            out.push(PSEUDONYM);
            out.extend_from_slice(&n.to_be_bytes());
        }
        EntityRef::Name(s) => {
            out.push(NAME);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

pub(crate) fn take_entity<'a>(input: &mut &'a [u8]) -> Option<EntityRef<'a>> {
    let (&tag, rest) = input.split_first()?;
    *input = rest;
    match tag {
        PSEUDONYM => {
            let bytes = take_bytes(input, 16)?;
            Some(EntityRef::Pseudonym(u128::from_be_bytes(
                bytes.try_into().ok()?,
            )))
        }
        NAME => {
            let len = usize::try_from(take_varint(input)?).ok()?;
            let bytes = take_bytes(input, len)?;
            std::str::from_utf8(bytes).ok().map(EntityRef::Name)
        }
        _ => None,
    }
}

/// The entity's bytes as an online key.
pub(crate) fn entity_key(id: EntityRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    put_entity(&mut out, id);
    out
}

/// A history key: feature index (big-endian, so keys sort by feature first), then entity.
pub(crate) fn put_key(out: &mut Vec<u8>, feature: u16, entity: EntityRef<'_>) {
    out.extend_from_slice(&feature.to_be_bytes());
    put_entity(out, entity);
}

/// A history key, and the bytes it spans.
pub(crate) fn take_key<'a>(input: &mut &'a [u8]) -> Option<(u16, EntityRef<'a>, &'a [u8])> {
    let start = *input;
    let feature = u16::from_be_bytes(take_bytes(input, 2)?.try_into().ok()?);
    let entity = take_entity(input)?;
    let spanned = start.len() - input.len();
    Some((feature, entity, &start[..spanned]))
}

pub(crate) fn put_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            put_varint(out, v.len() as u64 + 1);
            out.extend_from_slice(v);
        }
    }
}

fn take_value<'a>(input: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match take_varint(input)? {
        0 => Some(None),
        n => take_bytes(input, usize::try_from(n - 1).ok()?).map(Some),
    }
}

/// An earlier tick as its distance back from `tick_ms`; `0` for none.
fn put_back(out: &mut Vec<u8>, tick_ms: u64, earlier: Option<u64>) {
    put_varint(out, earlier.map_or(0, |e| tick_ms - e));
}

fn take_back(input: &mut &[u8], tick_ms: u64) -> Option<Option<u64>> {
    match take_varint(input)? {
        0 => Some(None),
        back => tick_ms.checked_sub(back).map(Some),
    }
}

/// One change in a history block: a key's new value at the block's tick, with the ticks of
/// its previous change and of its jump (see [`Head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry<'a> {
    /// The entry's key as bytes (feature, entity): what a block is sorted by.
    pub key: &'a [u8],
    pub feature: u16,
    pub entity: EntityRef<'a>,
    pub prev_ms: Option<u64>,
    pub jump_ms: Option<u64>,
    /// `None`: back to the default (a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Appends one entry to a block of tick `tick_ms`; `prev_ms` and `jump_ms` lie before it.
pub(crate) fn put_entry(
    out: &mut Vec<u8>,
    key: &[u8],
    tick_ms: u64,
    (prev_ms, jump_ms): (Option<u64>, Option<u64>),
    value: Option<&[u8]>,
) {
    out.extend_from_slice(key);
    put_back(out, tick_ms, prev_ms);
    put_back(out, tick_ms, jump_ms);
    put_value(out, value);
}

/// The entries of one block, in key order; `Err` at the first malformed one.
pub struct BlockEntries<'a> {
    rest: &'a [u8],
    tick_ms: u64,
}

impl<'a> BlockEntries<'a> {
    pub(crate) fn new(payload: &'a [u8], tick_ms: u64) -> BlockEntries<'a> {
        BlockEntries {
            rest: payload,
            tick_ms,
        }
    }

    fn entry(&mut self) -> Option<BlockEntry<'a>> {
        let input = &mut self.rest;
        let (feature, entity, key) = take_key(input)?;
        let prev_ms = take_back(input, self.tick_ms)?;
        let jump_ms = take_back(input, self.tick_ms)?;
        let value = take_value(input)?;
        Some(BlockEntry {
            key,
            feature,
            entity,
            prev_ms,
            jump_ms,
            value,
        })
    }
}

/// A block whose bytes do not decode although its seal matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Iterator for BlockEntries<'a> {
    type Item = Result<BlockEntry<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = self.entry().ok_or(Malformed);
        if entry.is_err() {
            self.rest = &[];
        }
        Some(entry)
    }
}

/// Where a key's chain of changes ends: its latest change and the jump pointers a next change
/// needs, kept in the key's online row so a commit never reads history.
///
/// A key's changes form a list, newest first, each pointing to its previous change and to one
/// earlier "jump" change chosen by depth alone (Myers' skew-binary jump pointers), so finding
/// the latest change at or before any tick takes O(log n) steps along pointers. The jump of the
/// change at depth `d + 1` is `d` itself, unless the two smallest weights of `d`'s greedy
/// skew-binary decomposition (weights 2^k - 1) are equal: then it is `d`'s jump's jump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub tick_ms: u64,
    /// Changes so far: 1 for the first.
    pub depth: u64,
    /// Ticks of the changes at depths jump(d), jump(jump(d)), … down to the first change.
    pub spine: Vec<u64>,
}

/// Whether the two smallest weights (2^k - 1) of `depth`'s greedy skew-binary decomposition
/// are equal.
fn two_smallest_weights_equal(mut depth: u64) -> bool {
    let (mut smallest, mut next) = (0, 0);
    while depth > 0 {
        // Saturating: a depth read from a file may be anything its seal vouches for.
        let k = 64 - depth.saturating_add(1).leading_zeros() - 1;
        let w = (1u64 << k) - 1;
        (next, smallest) = (smallest, w);
        depth -= w;
    }
    next != 0 && next == smallest
}

impl Head {
    /// The head of a key's first change.
    pub fn first(tick_ms: u64) -> Head {
        Head {
            tick_ms,
            depth: 1,
            spine: Vec::new(),
        }
    }

    /// Moves the head to a change at `tick_ms` (later than the head's), in place: a commit
    /// does this once per change. Returns that change's (previous, jump) ticks.
    pub fn advance(&mut self, tick_ms: u64) -> (Option<u64>, Option<u64>) {
        let previous = self.tick_ms;
        let jump = if two_smallest_weights_equal(self.depth) {
            if !self.spine.is_empty() {
                self.spine.remove(0);
            }
            self.spine.first().copied()
        } else {
            self.spine.insert(0, previous);
            Some(previous)
        };
        self.tick_ms = tick_ms;
        self.depth = self.depth.saturating_add(1);
        (Some(previous), jump)
    }

    /// The head after a change at `tick_ms` (later than `head`'s), and that change's
    /// (previous, jump) ticks.
    pub fn append(head: Option<&Head>, tick_ms: u64) -> (Head, (Option<u64>, Option<u64>)) {
        match head {
            None => (Head::first(tick_ms), (None, None)),
            Some(h) => {
                let mut next = h.clone();
                let pointers = next.advance(tick_ms);
                (next, pointers)
            }
        }
    }
}

/// One feature in an online row: its latest change (value, or `None` when that was a return
/// to the default) and the chain head behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineFeature {
    pub feature: u16,
    pub value: Option<Vec<u8>>,
    pub head: Head,
}

/// Encodes an online row's payload (before its seal), for tools that plant rows.
pub fn put_online(out: &mut Vec<u8>, features: &[OnlineFeature]) {
    for f in features {
        out.extend_from_slice(&f.feature.to_le_bytes());
        put_varint(out, f.head.tick_ms);
        put_value(out, f.value.as_deref());
        put_varint(out, f.head.depth);
        put_varint(out, f.head.spine.len() as u64);
        let mut at = f.head.tick_ms;
        for &tick in &f.head.spine {
            put_varint(out, at - tick);
            at = tick;
        }
    }
}

/// Decodes an online row's payload (after its seal); `None` when it does not decode.
pub fn take_online(mut input: &[u8]) -> Option<Vec<OnlineFeature>> {
    let input = &mut input;
    let mut features = Vec::new();
    while !input.is_empty() {
        let feature = u16::from_le_bytes(take_bytes(input, 2)?.try_into().ok()?);
        let tick_ms = take_varint(input)?;
        let value = take_value(input)?.map(<[u8]>::to_vec);
        let depth = take_varint(input)?;
        let n = take_varint(input)?;
        let mut spine = Vec::with_capacity(n.min(64) as usize);
        let mut at = tick_ms;
        for _ in 0..n {
            at = at.checked_sub(take_varint(input)?)?;
            spine.push(at);
        }
        let head = Head {
            tick_ms,
            depth,
            spine,
        };
        features.push(OnlineFeature {
            feature,
            value,
            head,
        });
    }
    Some(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed row vouches for its bytes, not for their sense: a chain head of any depth
    /// appends without overflowing.
    #[test]
    fn a_head_of_any_depth_appends() {
        for depth in [u64::MAX, u64::MAX - 1, 1 << 63] {
            let head = Head {
                tick_ms: 1_000,
                depth,
                spine: vec![500],
            };
            let (next, (prev, _)) = Head::append(Some(&head), 2_000);
            assert_eq!(prev, Some(1_000));
            assert!(next.depth >= depth);
        }
    }

    #[test]
    fn pseudonyms_render_back_to_the_same_text_and_other_ids_stay_names() {
        let id = "v_0123456789abcdef0123456789abcdef";
        assert!(matches!(EntityId::new(id), EntityId::Pseudonym(_)));
        assert_eq!(EntityId::new(id).to_string(), id);
        for other in [
            "v_0123456789ABCDEF0123456789abcdef",
            "v_0123456789abcdef0123456789abcdeg",
            "v_0123456789abcdef0123456789abcde",
            "v_0123456789abcdef0123456789abcdef0",
            "v_0123456789abcdef0123456789abcdé",
            "v_+123456789abcdef0123456789abcdef",
            "w_0123456789abcdef0123456789abcdef",
            "v_123",
            "tt000001",
            "",
            "v_",
        ] {
            assert_eq!(EntityId::new(other), EntityId::Name(other.to_string()));
        }
        let mut n = 0x0123_4567_89ab_cdef_u128;
        for _ in 0..64 {
            n = n
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .rotate_left(17);
            let text = EntityRef::Pseudonym(n).to_string();
            assert_eq!(EntityId::new(&text), EntityId::Pseudonym(n), "{text}");
        }
        assert_eq!(
            EntityId::new("v_ffffffffffffffffffffffffffffffff"),
            EntityId::Pseudonym(u128::MAX)
        );
    }

    #[test]
    fn keys_compare_as_bytes_as_they_do_as_tuples() {
        let ids = [
            EntityRef::Pseudonym(5),
            EntityRef::Pseudonym(u128::MAX),
            EntityRef::Name("a"),
            EntityRef::Name("ab"),
            EntityRef::Name("b"),
        ];
        let mut keys = Vec::new();
        for f in [0u16, 1, 300] {
            for id in ids {
                let mut key = Vec::new();
                put_key(&mut key, f, id);
                let mut input = key.as_slice();
                let (feature, entity, spanned) = take_key(&mut input).unwrap();
                assert_eq!((feature, entity, spanned.len()), (f, id, key.len()));
                keys.push(((f, entity_key(id)), key));
            }
        }
        let mut by_tuple = keys.clone();
        by_tuple.sort_by(|a, b| a.0.cmp(&b.0));
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(keys, by_tuple);
    }

    #[test]
    fn truncated_or_garbage_input_is_none_not_a_panic() {
        let mut block = Vec::new();
        let mut key = Vec::new();
        put_key(&mut key, 2, EntityRef::Name("tt1"));
        put_entry(
            &mut block,
            &key,
            5000,
            (Some(4000), Some(1000)),
            Some(b"[1]"),
        );
        let all: Vec<_> = BlockEntries::new(&block, 5000).collect();
        assert_eq!(all.len(), 1);
        let entry = all[0].unwrap();
        assert_eq!((entry.prev_ms, entry.jump_ms), (Some(4000), Some(1000)));
        for cut in 0..block.len() {
            let some_bad = BlockEntries::new(&block[..cut], 5000).any(|e| e.is_err());
            assert!(cut == 0 || some_bad, "cut at {cut}");
        }
        assert!(take_online(&[0xff; 7]).is_none());
        assert!(take_varint(&mut &[0xff; 11][..]).is_none());
    }

    /// The jump of depth d, by the recursive definition (Myers 1983).
    fn jump_by_definition(d: u64, memo: &mut Vec<u64>) -> u64 {
        while memo.len() as u64 <= d {
            let n = memo.len() as u64;
            let jump = if n <= 1 {
                0
            } else {
                let p = n - 1;
                let jp = memo[p as usize];
                let jjp = memo[jp as usize];
                if jp > 0 && p - jp == jp - jjp { jjp } else { p }
            };
            memo.push(jump);
        }
        memo[d as usize]
    }

    #[test]
    fn heads_follow_the_skew_binary_jumps_and_keep_their_spine() {
        let mut memo = Vec::new();
        let mut head: Option<Head> = None;
        let tick = |d: u64| d * 1000;
        for d in 1..2000u64 {
            let (next, (prev, jump)) = Head::append(head.as_ref(), tick(d));
            let want_jump = jump_by_definition(d, &mut memo);
            assert_eq!(prev, (d > 1).then(|| tick(d - 1)), "prev of {d}");
            assert_eq!(
                jump,
                (want_jump > 0).then(|| tick(want_jump)),
                "jump of {d}"
            );
            let mut spine = Vec::new();
            let mut at = want_jump;
            while at > 0 {
                spine.push(tick(at));
                at = jump_by_definition(at, &mut memo);
            }
            assert_eq!(next.spine, spine, "spine of {d}");
            assert!(next.spine.len() <= 2 * 11, "spine of {d} is O(log d)");
            head = Some(next);
        }
    }

    #[test]
    fn online_rows_round_trip() {
        let features = vec![
            OnlineFeature {
                feature: 0,
                value: Some(b"12".to_vec()),
                head: Head {
                    tick_ms: 9000,
                    depth: 6,
                    spine: vec![6000, 2000],
                },
            },
            OnlineFeature {
                feature: 7,
                value: None,
                head: Head {
                    tick_ms: 3000,
                    depth: 1,
                    spine: vec![],
                },
            },
        ];
        let mut out = Vec::new();
        put_online(&mut out, &features);
        assert_eq!(take_online(&out), Some(features));
    }
}
