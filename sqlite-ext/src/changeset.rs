//! SQLite's binary changeset format, read and written byte for byte.
//!
//! The format is the one `sqlite3session_changeset` produces (see sqlite.org/sessionintro.html):
//!
//! ```text
//! table:   'T'  varint(nCol)  nCol bytes of primary-key positions (0 = not in the key)  name '\0'
//! change:  op (INSERT 18 | UPDATE 23 | DELETE 9)  indirect (0 | 1)  record [record]
//! record:  one field per column: 0 undefined | 1 int (8 bytes BE) | 2 real (8 bytes BE)
//!          | 3 text (varint len, bytes) | 4 blob (varint len, bytes) | 5 null
//! ```
//!
//! An INSERT has the new record, a DELETE the old one, an UPDATE both: the old record holds the key and
//! the old values of the changed columns, the new record the new values of the changed columns; every
//! other field is undefined. Reading and writing here are exact inverses, which is what lets a JSON diff
//! reproduce the very bytes the session extension produced.

use crate::error::{Error, Result};
use crate::value::Value;

const TABLE: u8 = b'T';
const PATCHSET_TABLE: u8 = b'P';

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A new row.
    Insert,
    /// Some columns of an existing row changed.
    Update,
    /// A row removed.
    Delete,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Insert => 18,
            Op::Update => 23,
            Op::Delete => 9,
        }
    }

    fn from_code(code: u8) -> Option<Op> {
        match code {
            18 => Some(Op::Insert),
            23 => Some(Op::Update),
            9 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// One record: a field per column, `None` where the format says "undefined".
pub(crate) type Record = Vec<Option<Value>>;

/// One change of a binary changeset, positional (columns by index).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawChange {
    pub(crate) op: Op,
    pub(crate) indirect: bool,
    /// The old record (UPDATE, DELETE); empty for an INSERT.
    pub(crate) old: Record,
    /// The new record (INSERT, UPDATE); empty for a DELETE.
    pub(crate) new: Record,
}

/// The changes of one table, under one table header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawTable {
    pub(crate) name: String,
    /// Per column: its 1-based position in the primary key, or 0.
    pub(crate) pk: Vec<u8>,
    pub(crate) changes: Vec<RawChange>,
}

/// Reads a whole changeset. Fails on anything the session extension would not have written.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<RawTable>> {
    let mut r = Reader { bytes, pos: 0 };
    let mut tables: Vec<RawTable> = Vec::new();
    while !r.done() {
        let tag = r.byte()?;
        if tag == TABLE {
            let ncol = r.varint()?;
            if ncol == 0 || ncol > 32_767 {
                return Err(corrupt(format!("table with {ncol} columns")));
            }
            let pk = r.take(ncol as usize)?.to_vec();
            let name = r.cstr()?;
            tables.push(RawTable { name, pk, changes: Vec::new() });
            continue;
        }
        if tag == PATCHSET_TABLE {
            return Err(corrupt("a patchset, not a changeset".into()));
        }
        let op = Op::from_code(tag).ok_or_else(|| corrupt(format!("unknown opcode {tag}")))?;
        let table = tables.last_mut().ok_or_else(|| corrupt("change before any table header".into()))?;
        let ncol = table.pk.len();
        let indirect = match r.byte()? {
            0 => false,
            1 => true,
            b => return Err(corrupt(format!("indirect flag {b}"))),
        };
        let old = if op == Op::Insert { Vec::new() } else { r.record(ncol)? };
        let new = if op == Op::Delete { Vec::new() } else { r.record(ncol)? };
        table.changes.push(RawChange { op, indirect, old, new });
    }
    Ok(tables)
}

/// Writes tables and their changes in the binary format.
pub(crate) fn write(tables: &[RawTable]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tables {
        out.push(TABLE);
        put_varint(&mut out, t.pk.len() as u64);
        out.extend_from_slice(&t.pk);
        out.extend_from_slice(t.name.as_bytes());
        out.push(0);
        for c in &t.changes {
            out.push(c.op.code());
            out.push(u8::from(c.indirect));
            for field in c.old.iter().chain(c.new.iter()) {
                put_field(&mut out, field.as_ref());
            }
        }
    }
    out
}

fn put_field(out: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None => out.push(0),
        Some(Value::Integer(i)) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Some(Value::Real(r)) => {
            out.push(2);
            out.extend_from_slice(&r.to_bits().to_be_bytes());
        }
        Some(Value::Text(t)) => {
            out.push(3);
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Some(Value::Blob(b)) => {
            out.push(4);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Some(Value::Null) => out.push(5),
    }
}

/// SQLite's varint: big-endian groups of 7 bits, the high bit set on all but the last byte; a ninth
/// byte, if reached, carries 8 bits.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v > 0x00ff_ffff_ffff_ffff {
        let mut buf = [0u8; 9];
        buf[8] = v as u8;
        let mut rest = v >> 8;
        for b in buf[..8].iter_mut().rev() {
            *b = (rest as u8 & 0x7f) | 0x80;
            rest >>= 7;
        }
        out.extend_from_slice(&buf);
        return;
    }
    let mut groups = [0u8; 9];
    let mut n = 0;
    let mut rest = v;
    loop {
        groups[n] = (rest & 0x7f) as u8;
        n += 1;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(if i == 0 { groups[i] } else { groups[i] | 0x80 });
    }
}

fn corrupt(msg: String) -> Error {
    Error::CorruptChangeset(msg)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| corrupt("truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| corrupt("truncated".into()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..9 {
            let b = self.byte()?;
            if i == 8 {
                return Ok((v << 8) | u64::from(b));
            }
            v = (v << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        unreachable!("the loop returns by its ninth byte")
    }

    fn cstr(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let len =
            rest.iter().position(|&b| b == 0).ok_or_else(|| corrupt("unterminated table name".into()))?;
        let s = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt("table name is not UTF-8".into()))?;
        self.pos += len + 1;
        Ok(s.to_owned())
    }

    fn record(&mut self, ncol: usize) -> Result<Record> {
        (0..ncol).map(|_| self.field()).collect()
    }

    fn field(&mut self) -> Result<Option<Value>> {
        Ok(Some(match self.byte()? {
            0 => return Ok(None),
            1 => Value::Integer(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => Value::Real(f64::from_bits(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))),
            3 => {
                let n = self.len()?;
                let t = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| corrupt("TEXT that is not UTF-8".into()))?;
                Value::Text(t.to_owned())
            }
            4 => {
                let n = self.len()?;
                Value::Blob(self.take(n)?.to_vec())
            }
            5 => Value::Null,
            t => return Err(corrupt(format!("unknown value type {t}"))),
        }))
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| corrupt("length beyond the input".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_at_every_width() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 21, 1 << 35, 1 << 56, (1 << 56) - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader { bytes: &out, pos: 0 };
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.done(), "{v}: {out:?}");
        }
        let mut out = Vec::new();
        put_varint(&mut out, 200);
        assert_eq!(out, [0x81, 0x48]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let full = write(&[RawTable {
            name: "t".into(),
            pk: vec![1, 0],
            changes: vec![RawChange {
                op: Op::Insert,
                indirect: false,
                old: vec![],
                new: vec![Some(Value::Text("k".into())), Some(Value::Blob(vec![1, 2, 3]))],
            }],
        }]);
        assert!(parse(&full).is_ok());
        let header = 1 + 1 + 2 + 2;
        for cut in (1..full.len()).filter(|&c| c != header) {
            assert!(parse(&full[..cut]).is_err(), "cut at {cut}");
        }
    }
}
