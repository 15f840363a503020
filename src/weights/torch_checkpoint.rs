//! Reading PyTorch checkpoints natively (no Python): legacy `torch.save` files (before 1.6),
//! zip checkpoints (`torch.save` since 1.6), TorchScript archives (`torch.jit.save`), and
//! safetensors files, into named tensors on the CPU.
//!
//! All three PyTorch formats are pickles in which tensors are
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls and storages are
//! persistent ids `('storage', storage_type, key, location, numel[, view_metadata])` whose bytes
//! live outside the pickle (after it in the legacy format, in `<archive>/data/<key>` in a zip).
//! A small pickle machine rebuilds the object tree with tensors as references; every other
//! object is kept as an opaque value. The tree is then walked and every tensor reached is named
//! by its dotted path: dict keys, list indices, object attributes, and for a pickled `nn.Module`
//! the names `state_dict()` would give.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// Every tensor of a PyTorch checkpoint, with dotted names, on the CPU, sorted by name.
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let format = detect_format(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    if format == Format::Safetensors {
        return Ok(crate::weights::load(path)?.0);
    }
    read_pytorch(path, format).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `torch.save` since 1.6 and `torch.jit.save`.
    Zip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: consecutive pickles.
    LegacyPickle,
    Safetensors,
}

fn detect_format(path: &Path) -> Result<Format> {
    let mut file = std::fs::File::open(path).context("cannot open the file")?;
    let len = file.metadata().context("cannot read the file")?.len();
    let mut head = Vec::with_capacity(512);
    file.by_ref()
        .take(512)
        .read_to_end(&mut head)
        .context("cannot read the file")?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::Zip);
    }
    // PROTO opcode with a protocol torch.save can write.
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(Format::LegacyPickle);
    }
    if head.len() >= 9 {
        let header_len = u64::from_le_bytes(head[..8].try_into().unwrap());
        if head[8] == b'{' && header_len.checked_add(8).is_some_and(|end| end <= len) {
            return Ok(Format::Safetensors);
        }
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        bail!("a tar archive (the torch.save format before PyTorch 0.4), which is not supported");
    }
    bail!(
        "not a PyTorch checkpoint: neither a zip archive (torch.save since 1.6, torch.jit.save), \
         a legacy torch.save pickle nor a safetensors file"
    )
}

fn read_pytorch(path: &Path, format: Format) -> Result<Vec<(String, Tensor)>> {
    match format {
        Format::Zip => read_zip(path),
        Format::LegacyPickle => {
            let bytes = std::fs::read(path).context("cannot read the file")?;
            read_legacy(&bytes)
        }
        Format::Safetensors => unreachable!("safetensors files are delegated"),
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy format.

/// The first pickle of a legacy `torch.save` file is this number.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let not_legacy = "starts like a pickle but is not a torch.save checkpoint";
    let (magic, pos) = Unpickler::run(bytes, 0).context(not_legacy)?;
    if magic.as_i128() != Some(LEGACY_MAGIC) {
        bail!("{not_legacy} (no torch.save magic number)");
    }
    let (version, pos) = Unpickler::run(bytes, pos).context("reading the protocol version")?;
    ensure!(
        version.as_int() == Some(1001),
        "unsupported legacy torch.save protocol version {version:?}"
    );
    let (sys_info, pos) = Unpickler::run(bytes, pos).context("reading the system information")?;
    let little_endian = match sys_info.dict_get("little_endian") {
        Some(Value::Bool(b)) => b,
        _ => true,
    };
    let mut main = Unpickler::new(bytes, pos);
    let root = main.load().context("reading the checkpoint pickle")?;
    let storage_kinds = std::mem::take(&mut main.storage_kinds);
    let (keys, mut pos) = Unpickler::run(bytes, main.pos).context("reading the storage keys")?;

    // After the keys, each storage: its element count (u64 LE), then its bytes.
    let mut storages = HashMap::new();
    for key in keys.items().context("the storage key list is not a list")? {
        let key = key.as_text().context("a storage key is not a string")?;
        let kind = *storage_kinds
            .get(key)
            .with_context(|| format!("storage {key} is listed but never used"))?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .with_context(|| format!("file truncated before storage {key}"))?;
        let count = u64::from_le_bytes(count_bytes.try_into().unwrap());
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()))
            .with_context(|| format!("storage {key}: impossible element count {count}"))?;
        let data = bytes
            .get(pos + 8..)
            .and_then(|rest| rest.get(..nbytes))
            .with_context(|| {
                format!("file truncated in storage {key} ({nbytes} bytes announced)")
            })?;
        storages.insert(key.to_string(), data);
        pos += 8 + nbytes;
    }
    let mut materialiser = Materialiser::new(little_endian, |key: &str| {
        storages
            .get(key)
            .map(|data| data.to_vec())
            .with_context(|| format!("storage {key} is missing from the file"))
    });
    materialiser.named_tensors(&root)
}

// ---------------------------------------------------------------------------------------------
// Zip format and TorchScript.

fn read_zip(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).context("cannot open the file")?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .context("a damaged or truncated zip archive")?;
    // Both writers put everything in one top folder named after the file: `<prefix>/data.pkl`.
    let data_pkl = archive
        .file_names()
        .filter(|n| *n == "data.pkl" || (n.ends_with("/data.pkl") && n.matches('/').count() == 1))
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .context("a zip archive without data.pkl, so not a PyTorch checkpoint")?;
    let prefix = data_pkl.trim_end_matches("data.pkl").to_string();

    let read_entry = |archive: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>> {
        let mut entry = archive
            .by_name(name)
            .with_context(|| format!("{name} is missing from the archive"))?;
        // The size comes from the archive's directory: trust it only so far.
        let mut bytes = Vec::with_capacity(entry.size().min(1 << 30) as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name} from the archive"))?;
        Ok(bytes)
    };
    let little_endian = match archive.index_for_name(&format!("{prefix}byteorder")) {
        None => true,
        Some(_) => {
            let order = read_entry(&mut archive, &format!("{prefix}byteorder"))?;
            match order.trim_ascii() {
                b"little" => true,
                b"big" => false,
                other => bail!("unknown byte order {:?}", String::from_utf8_lossy(other)),
            }
        }
    };
    let pickle = read_entry(&mut archive, &data_pkl)?;
    let root = Unpickler::new(&pickle, 0)
        .load()
        .with_context(|| format!("reading {data_pkl}"))?;
    // TorchScript's constants.pkl holds only tensors of the code (`CONSTANTS.c0`), which are not
    // part of the state dict: the parameters and buffers are the module tree in data.pkl.
    let mut materialiser = Materialiser::new(little_endian, |key: &str| {
        read_entry(&mut archive, &format!("{prefix}data/{key}"))
    });
    materialiser.named_tensors(&root)
}

// ---------------------------------------------------------------------------------------------
// Pickle values.

/// A pickled value. Lists, dicts and objects are shared and mutable, as in Python: the pickle
/// memoizes them before filling them.
#[derive(Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    /// Insertion-ordered, like Python's dict and OrderedDict.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A class or function named by GLOBAL / STACK_GLOBAL.
    Global(Rc<Global>),
    /// An instance we do not interpret (an `nn.Module`, a TorchScript object, anything unknown).
    Object(Rc<RefCell<Object>>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

struct Global {
    module: String,
    name: String,
}

struct Object {
    class: String,
    /// What BUILD gave (usually the attribute dict).
    state: Option<Value>,
    /// Items appended or set on an instance of a list or dict subclass.
    list_items: Vec<Value>,
    dict_items: Vec<(Value, Value)>,
}

/// A storage named by a persistent id; its bytes are read only once the pickle is done.
struct StorageRef {
    key: String,
    kind: Kind,
    /// Storage views of old files: (offset, length) in elements within the keyed storage.
    view: Option<(i64, i64)>,
}

/// A tensor to rebuild: a strided view of a storage, offset in elements of `kind`.
struct TensorRef {
    storage: Rc<StorageRef>,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl Value {
    /// An opaque instance of `class`, to be filled by BUILD, APPEND(S) or SETITEM(S).
    fn new_object(class: String) -> Value {
        Value::Object(Rc::new(RefCell::new(Object {
            class,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })))
    }

    fn new_list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(RefCell::new(items)))
    }

    fn new_dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict(Rc::new(RefCell::new(items)))
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    fn as_i128(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i as i128),
            Value::BigInt(bytes) if bytes.len() <= 16 => Some(le_signed(bytes)),
            _ => None,
        }
    }

    /// Strings; Python 2 pickles may carry them as bytes.
    fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(items) => Some(items.to_vec()),
            Value::List(items) => Some(items.borrow().clone()),
            _ => None,
        }
    }

    fn int_items(&self) -> Option<Vec<i64>> {
        self.items()?.iter().map(Value::as_int).collect()
    }

    fn dict_get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(items) => items
                .borrow()
                .iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Global(g) => write!(f, "{}.{}", g.module, g.name),
            Value::Object(o) => write!(f, "<{} object>", o.borrow().class),
            other => write!(f, "<{}>", other.type_name()),
        }
    }
}

/// A little-endian two's complement integer of at most 16 bytes.
fn le_signed(bytes: &[u8]) -> i128 {
    let mut wide = [0u8; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        wide[bytes.len()..].fill(0xff);
    }
    i128::from_le_bytes(wide)
}

// ---------------------------------------------------------------------------------------------
// The pickle machine.

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// The element type of each storage key, as first seen (the legacy format needs it to
    /// find where each storage's bytes end).
    storage_kinds: HashMap<String, Kind>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Unpickler {
            data,
            pos,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storage_kinds: HashMap::new(),
        }
    }

    /// Reads one pickle starting at `pos`; returns its value and where it ended.
    fn run(data: &'a [u8], pos: usize) -> Result<(Value, usize)> {
        let mut unpickler = Unpickler::new(data, pos);
        let value = unpickler.load()?;
        Ok((value, unpickler.pos))
    }

    fn load(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let opcode = self.byte()?;
            if opcode == op::STOP {
                let value = self
                    .pop()
                    .with_context(|| format!("pickle STOP at byte {at}"))?;
                return Ok(value);
            }
            self.step(opcode)
                .with_context(|| format!("pickle opcode 0x{opcode:02x} at byte {at}"))?;
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .with_context(|| format!("data truncated at byte {}", self.data.len()))?;
        self.pos += n;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().unwrap())
    }

    fn length(&mut self, width: usize) -> Result<usize> {
        let n = match width {
            1 => self.byte()? as u64,
            4 => u32::from_le_bytes(self.array()?) as u64,
            _ => u64::from_le_bytes(self.array()?),
        };
        usize::try_from(n).map_err(|_| anyhow!("length {n} too large"))
    }

    /// A newline-terminated argument of the text opcodes.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("data truncated in a text line")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).context("a text argument is not UTF-8")
    }

    fn push(&mut self, value: Value) {
        self.stack.push(value);
    }

    fn pop(&mut self) -> Result<Value> {
        ensure!(
            self.marks.last().is_none_or(|&m| m < self.stack.len()),
            "the stack is empty above the mark"
        );
        self.stack.pop().context("the stack is empty")
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().context("the stack is empty")
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().context("no MARK on the stack")?;
        ensure!(
            mark <= self.stack.len(),
            "the stack is shorter than its MARK"
        );
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, index: u64) -> Result<Value> {
        self.memo
            .get(&index)
            .cloned()
            .with_context(|| format!("memo entry {index} was never stored"))
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn step(&mut self, opcode: u8) -> Result<()> {
        match opcode {
            op::PROTO => {
                let version = self.byte()?;
                ensure!(version <= 5, "unknown pickle protocol {version}");
            }
            op::FRAME => {
                self.take(8)?;
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?.clone();
                self.push(top);
            }

            op::NONE => self.push(Value::None),
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            op::BININT => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i64));
            }
            op::BININT1 => {
                let v = self.byte()?;
                self.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i64));
            }
            op::LONG1 | op::LONG4 => {
                let n = self.length(if opcode == op::LONG1 { 1 } else { 4 })?;
                let bytes = self.take(n)?;
                let value = if n <= 8 {
                    Value::Int(le_signed(bytes) as i64)
                } else {
                    Value::BigInt(bytes.into())
                };
                self.push(value);
            }
            op::INT => {
                let text = self.line()?;
                // Protocol 0 writes booleans as INT 01 / 00.
                let value = match text {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    t => Value::Int(t.parse().with_context(|| format!("bad INT {t:?}"))?),
                };
                self.push(value);
            }
            op::LONG => {
                let text = self.line()?;
                let digits = text.trim_end_matches('L');
                let v = digits
                    .parse()
                    .with_context(|| format!("bad LONG {text:?}"))?;
                self.push(Value::Int(v));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v));
            }
            op::FLOAT => {
                let text = self.line()?;
                let v = text
                    .parse()
                    .with_context(|| format!("bad FLOAT {text:?}"))?;
                self.push(Value::Float(v));
            }

            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let width = match opcode {
                    op::SHORT_BINUNICODE => 1,
                    op::BINUNICODE => 4,
                    _ => 8,
                };
                let n = self.length(width)?;
                let text = std::str::from_utf8(self.take(n)?).context("a string is not UTF-8")?;
                self.push(Value::Str(text.into()));
            }
            // Python 2 `str`, read as text like torch.load's default encoding does.
            op::SHORT_BINSTRING | op::BINSTRING => {
                let n = self.length(if opcode == op::SHORT_BINSTRING { 1 } else { 4 })?;
                let text = String::from_utf8_lossy(self.take(n)?);
                self.push(Value::Str(text.as_ref().into()));
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let width = match opcode {
                    op::SHORT_BINBYTES => 1,
                    op::BINBYTES => 4,
                    _ => 8,
                };
                let n = self.length(width)?;
                let bytes = self.take(n)?;
                self.push(Value::Bytes(bytes.into()));
            }

            op::EMPTY_TUPLE => self.push(Value::Tuple(Rc::new([]))),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (opcode - op::TUPLE1 + 1) as usize;
                ensure!(self.stack.len() >= n, "the stack is too short for a tuple");
                let items = self.stack.split_off(self.stack.len() - n);
                self.push(Value::Tuple(items.into()));
            }
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items.into()));
            }
            op::EMPTY_LIST => self.push(Value::new_list(Vec::new())),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push(Value::new_list(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            op::APPENDS | op::ADDITEMS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            // Sets only matter for the tensors they might hold: kept as lists.
            op::EMPTY_SET => self.push(Value::new_list(Vec::new())),
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(Value::new_list(items));
            }
            op::EMPTY_DICT => self.push(Value::new_dict(Vec::new())),
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.push(Value::new_dict(pairs));
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.extend_dict(vec![(key, value)])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                self.extend_dict(pairs(items)?)?;
            }

            op::BINPUT => {
                let index = self.byte()? as u64;
                self.memo_put(index)?;
            }
            op::LONG_BINPUT => {
                let index = u32::from_le_bytes(self.array()?) as u64;
                self.memo_put(index)?;
            }
            op::PUT => {
                let text = self.line()?;
                let index = text.parse().with_context(|| format!("bad PUT {text:?}"))?;
                self.memo_put(index)?;
            }
            op::MEMOIZE => {
                let index = self.memo.len() as u64;
                self.memo_put(index)?;
            }
            op::BINGET => {
                let index = self.byte()? as u64;
                let value = self.memo_get(index)?;
                self.push(value);
            }
            op::LONG_BINGET => {
                let index = u32::from_le_bytes(self.array()?) as u64;
                let value = self.memo_get(index)?;
                self.push(value);
            }
            op::GET => {
                let text = self.line()?;
                let index = text.parse().with_context(|| format!("bad GET {text:?}"))?;
                let value = self.memo_get(index)?;
                self.push(value);
            }

            op::GLOBAL => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Value::Global(Rc::new(Global { module, name })));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (module.as_text(), name.as_text()) else {
                    bail!("STACK_GLOBAL needs two strings");
                };
                let (module, name) = (module.to_string(), name.to_string());
                self.push(Value::Global(Rc::new(Global { module, name })));
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = args.items().context("REDUCE arguments are not a tuple")?;
                let value = self.call(&callable, args)?;
                self.push(value);
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let class = self.pop()?;
                args.items().context("NEWOBJ arguments are not a tuple")?;
                let value = instantiate(&class);
                self.push(value);
            }
            op::NEWOBJ_EX => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let class = self.pop()?;
                let value = instantiate(&class);
                self.push(value);
            }
            op::INST => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.pop_mark()?;
                self.push(Value::new_object(format!("{module}.{name}")));
            }
            op::OBJ => {
                let items = self.pop_mark()?;
                let class = items.first().context("OBJ without a class")?;
                let value = instantiate(class);
                self.push(value);
            }
            op::BUILD => {
                let state = self.pop()?;
                // An OrderedDict's state is its `_metadata` (module versions); a tensor's is its
                // Python attributes. Neither holds weights, so only objects keep theirs.
                if let Value::Object(object) = self.top()? {
                    object.borrow_mut().state = Some(state);
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let value = self.persistent_load(pid)?;
                self.push(value);
            }
            op::PERSID => {
                let pid = self.line()?;
                self.push(Value::new_object(format!("persistent id {pid}")));
            }
            other => bail!("unsupported pickle opcode 0x{other:02x}"),
        }
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(list) => list.borrow_mut().extend(items),
            Value::Object(object) => object.borrow_mut().list_items.extend(items),
            other => bail!("cannot append to a {}", other.type_name()),
        }
        Ok(())
    }

    fn extend_dict(&mut self, items: Vec<(Value, Value)>) -> Result<()> {
        match self.top()? {
            // Pickled dicts never repeat a key, so appending keeps dict semantics.
            Value::Dict(dict) => dict.borrow_mut().extend(items),
            Value::Object(object) => object.borrow_mut().dict_items.extend(items),
            other => bail!("cannot set items on a {}", other.type_name()),
        }
        Ok(())
    }

    /// `('storage', storage_type, key, location, numel[, view_metadata])`; other persistent ids
    /// (legacy module source code) are opaque.
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        let items = pid.items().unwrap_or_default();
        if items.first().and_then(Value::as_text) != Some("storage") {
            return Ok(Value::new_object("persistent id".into()));
        }
        ensure!(
            items.len() >= 5,
            "a storage persistent id with {} items",
            items.len()
        );
        let kind = match &items[1] {
            Value::Global(g) => storage_kind(&g.name)
                .with_context(|| format!("unsupported storage type {}.{}", g.module, g.name))?,
            other => bail!("storage type is {other:?}, not a class"),
        };
        let key = items[2]
            .as_text()
            .context("a storage key is not a string")?
            .to_string();
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(meta) => {
                // (view_key, offset, size), in elements.
                let meta = meta.items().unwrap_or_default();
                match (
                    meta.get(1).and_then(Value::as_int),
                    meta.get(2).and_then(Value::as_int),
                ) {
                    (Some(offset), Some(size)) => Some((offset, size)),
                    _ => bail!("storage {key}: malformed view metadata"),
                }
            }
        };
        self.storage_kinds.entry(key.clone()).or_insert(kind);
        Ok(Value::Storage(Rc::new(StorageRef { key, kind, view })))
    }

    /// REDUCE: the few callables that matter are interpreted, every other one gives an opaque
    /// object.
    fn call(&self, callable: &Value, args: Vec<Value>) -> Result<Value> {
        let Value::Global(global) = callable else {
            return Ok(Value::new_object(format!("{callable:?}")));
        };
        let first = || args.first().cloned().unwrap_or(Value::None);
        Ok(match (global.module.as_str(), global.name.as_str()) {
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
                rebuild_tensor(&args, None)?
            }
            ("torch._utils", "_rebuild_tensor_v3") => {
                // (storage, offset, size, stride, requires_grad, hooks, dtype, metadata)
                let kind = match args.get(6) {
                    Some(Value::Global(g)) => dtype_kind(&g.name),
                    _ => None,
                }
                .context("_rebuild_tensor_v3 with an unsupported dtype")?;
                rebuild_tensor(&args, Some(kind))?
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => first(),
            // Tensor subclasses: (func, type, func_args, state).
            ("torch._tensor", "_rebuild_from_type" | "_rebuild_from_type_v2") => {
                let inner_args = args.get(2).and_then(Value::items).unwrap_or_default();
                self.call(&first(), inner_args)?
            }
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                let entries = first().items().unwrap_or_default();
                let pairs = entries
                    .iter()
                    .filter_map(|pair| match pair.items()?.as_slice() {
                        [k, v] => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect();
                Value::new_dict(pairs)
            }
            ("torch", "Size") | ("builtins" | "__builtin__", "tuple") => {
                Value::Tuple(first().items().unwrap_or_default().into())
            }
            ("builtins" | "__builtin__", "list" | "set" | "frozenset") => {
                Value::new_list(first().items().unwrap_or_default())
            }
            // Protocol 2 writes bytes as _codecs.encode(text, 'latin1').
            ("_codecs", "encode") => match first() {
                Value::Str(text) => Value::Bytes(text.chars().map(|c| c as u8).collect()),
                other => other,
            },
            // TorchScript wraps typed lists and tags values with their type.
            ("torch.jit._pickle", name) if name.starts_with("build_") => first(),
            ("torch.jit._pickle", "restore_type_tag") => first(),
            ("copyreg" | "copy_reg", "_reconstructor") => instantiate(&first()),
            (module, name) => Value::new_object(format!("{module}.{name}")),
        })
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    ensure!(items.len() % 2 == 0, "an odd number of dict items");
    let mut items = items.into_iter();
    let mut pairs = Vec::new();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// `cls.__new__(cls, *args)`: dicts stay dicts; anything else is an opaque object (its
/// constructor arguments never hold weights in the files torch writes).
fn instantiate(class: &Value) -> Value {
    match class {
        Value::Global(g) => match (g.module.as_str(), g.name.as_str()) {
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                Value::new_dict(Vec::new())
            }
            (module, name) => Value::new_object(format!("{module}.{name}")),
        },
        other => Value::new_object(format!("{other:?}")),
    }
}

fn rebuild_tensor(args: &[Value], kind: Option<Kind>) -> Result<Value> {
    let [storage, offset, size, stride, ..] = args else {
        bail!("_rebuild_tensor with {} arguments", args.len());
    };
    let Value::Storage(storage) = storage else {
        bail!(
            "_rebuild_tensor of a {}, not a storage",
            storage.type_name()
        );
    };
    let offset = offset
        .as_int()
        .context("tensor storage offset is not an int")?;
    let size = size
        .int_items()
        .context("tensor size is not a tuple of ints")?;
    let stride = stride
        .int_items()
        .context("tensor stride is not a tuple of ints")?;
    ensure!(
        size.len() == stride.len(),
        "tensor size and stride differ in length"
    );
    Ok(Value::Tensor(Rc::new(TensorRef {
        kind: kind.unwrap_or(storage.kind),
        storage: storage.clone(),
        offset,
        size,
        stride,
    })))
}

/// The element type of `torch.<Name>Storage`.
fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" | "UntypedStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        "ComplexHalfStorage" => Kind::ComplexHalf,
        "ComplexFloatStorage" => Kind::ComplexFloat,
        "ComplexDoubleStorage" => Kind::ComplexDouble,
        "QInt8Storage" => Kind::QInt8,
        "QUInt8Storage" => Kind::QUInt8,
        "QInt32Storage" => Kind::QInt32,
        _ => return None,
    })
}

/// The element type of `torch.<dtype>`.
fn dtype_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" | "float" => Kind::Float,
        "float64" | "double" => Kind::Double,
        "float16" | "half" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "int64" | "long" => Kind::Int64,
        "int32" | "int" => Kind::Int,
        "int16" | "short" => Kind::Int16,
        "int8" => Kind::Int8,
        "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        "complex32" | "chalf" => Kind::ComplexHalf,
        "complex64" | "cfloat" => Kind::ComplexFloat,
        "complex128" | "cdouble" => Kind::ComplexDouble,
        "float8_e5m2" => Kind::Float8e5m2,
        "float8_e4m3fn" => Kind::Float8e4m3fn,
        "float8_e5m2fnuz" => Kind::Float8e5m2fnuz,
        "float8_e4m3fnuz" => Kind::Float8e4m3fnuz,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// From the object tree to named tensors.

struct Materialiser<F> {
    little_endian: bool,
    read_storage: F,
    /// The bytes of each storage key, read once.
    storage_bytes: HashMap<String, Rc<Vec<u8>>>,
    /// One typed 1-D tensor per (key, byte range, kind): views of one storage share it.
    bases: HashMap<(String, usize, usize, Kind), Tensor>,
}

impl<F: FnMut(&str) -> Result<Vec<u8>>> Materialiser<F> {
    fn new(little_endian: bool, read_storage: F) -> Self {
        Materialiser {
            little_endian,
            read_storage,
            storage_bytes: HashMap::new(),
            bases: HashMap::new(),
        }
    }

    fn named_tensors(&mut self, root: &Value) -> Result<Vec<(String, Tensor)>> {
        let mut found = Vec::new();
        collect_tensors(root, String::new(), &mut Vec::new(), &mut found);
        let mut named = BTreeMap::new();
        for (name, tensor) in found {
            let t = match tensor {
                Found::Tensor(t) => self.tensor(&t),
                Found::Unsupported(how) => Err(anyhow!("made by {how}, which is not supported")),
            }
            .with_context(|| format!("tensor {name:?}"))?;
            ensure!(
                named.insert(name.clone(), t).is_none(),
                "two tensors are both named {name:?}"
            );
        }
        Ok(named.into_iter().collect())
    }

    fn tensor(&mut self, t: &TensorRef) -> Result<Tensor> {
        let storage = &t.storage;
        let bytes = match self.storage_bytes.get(&storage.key) {
            Some(bytes) => bytes.clone(),
            None => {
                let bytes = Rc::new((self.read_storage)(&storage.key)?);
                self.storage_bytes
                    .insert(storage.key.clone(), bytes.clone());
                bytes
            }
        };
        // The byte range this storage (or storage view) covers.
        let storage_elt = storage.kind.elt_size_in_bytes();
        let (start, len) = match storage.view {
            None => (0, bytes.len()),
            Some((offset, size)) => {
                let start = usize::try_from(offset)
                    .ok()
                    .and_then(|o| o.checked_mul(storage_elt));
                let len = usize::try_from(size)
                    .ok()
                    .and_then(|n| n.checked_mul(storage_elt));
                match (start, len) {
                    (Some(start), Some(len)) if start.saturating_add(len) <= bytes.len() => {
                        (start, len)
                    }
                    _ => bail!("storage view beyond its storage {}", storage.key),
                }
            }
        };
        let elt = t.kind.elt_size_in_bytes();
        let numel = (len / elt) as i64;
        // The highest element the view touches must lie inside the storage.
        ensure!(
            t.offset >= 0 && t.size.iter().all(|&s| s >= 0) && t.stride.iter().all(|&s| s >= 0),
            "negative offset, size or stride"
        );
        if t.size.iter().all(|&s| s > 0) {
            let last = t
                .size
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |acc, (&n, &s)| {
                    acc.checked_add((n - 1).checked_mul(s)?)
                })
                .context("tensor extent overflows")?;
            ensure!(
                last < numel,
                "tensor of size {:?}, stride {:?} and offset {} needs more than the {numel} \
                 elements of storage {}",
                t.size,
                t.stride,
                t.offset,
                storage.key
            );
        }
        let cache_key = (storage.key.clone(), start, len, t.kind);
        if !self.bases.contains_key(&cache_key) {
            let mut data = bytes[start..start + numel as usize * elt].to_vec();
            if !self.little_endian {
                swap_byte_order(&mut data, t.kind);
            }
            let base = Tensor::f_from_data_size(&data, &[numel], t.kind)?;
            self.bases.insert(cache_key.clone(), base);
        }
        let base = &self.bases[&cache_key];
        Ok(base
            .f_as_strided(t.size.as_slice(), t.stride.as_slice(), t.offset)?
            .f_contiguous()?)
    }
}

fn swap_byte_order(data: &mut [u8], kind: Kind) {
    // Complex numbers are two floats, each swapped on its own.
    let unit = match kind {
        Kind::ComplexHalf | Kind::ComplexFloat | Kind::ComplexDouble => {
            kind.elt_size_in_bytes() / 2
        }
        _ => kind.elt_size_in_bytes(),
    };
    if unit > 1 {
        data.chunks_exact_mut(unit).for_each(|c| c.reverse());
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Float(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

/// The address of a shared container, to stop at reference cycles.
fn container_id(value: &Value) -> Option<usize> {
    match value {
        Value::List(rc) => Some(Rc::as_ptr(rc) as *const u8 as usize),
        Value::Dict(rc) => Some(Rc::as_ptr(rc) as *const u8 as usize),
        Value::Object(rc) => Some(Rc::as_ptr(rc) as *const u8 as usize),
        _ => None,
    }
}

enum Found {
    Tensor(Rc<TensorRef>),
    /// A tensor rebuilt by a function we do not interpret (quantized, sparse, nested, meta...).
    Unsupported(String),
}

/// Tensor rebuild functions other than those `Unpickler::call` interprets.
fn is_unsupported_tensor(class: &str) -> bool {
    class.starts_with("torch._utils._rebuild_") || class.starts_with("torch._tensor._rebuild_")
}

/// Every tensor reachable from `value`, named by its dotted path. A tensor reached by two
/// paths (tied weights) gets both names, as in a state dict.
fn collect_tensors(
    value: &Value,
    prefix: String,
    path: &mut Vec<usize>,
    found: &mut Vec<(String, Found)>,
) {
    let id = container_id(value);
    if let Some(id) = id {
        if path.contains(&id) {
            return;
        }
        path.push(id);
    }
    match value {
        Value::Tensor(t) => found.push((prefix, Found::Tensor(t.clone()))),
        Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_tensors(item, join(&prefix, &i.to_string()), path, found);
            }
        }
        Value::List(items) => {
            for (i, item) in items.borrow().iter().enumerate() {
                collect_tensors(item, join(&prefix, &i.to_string()), path, found);
            }
        }
        Value::Dict(items) => {
            for (k, v) in items.borrow().iter() {
                collect_tensors(v, join(&prefix, &key_name(k)), path, found);
            }
        }
        Value::Object(object) if is_unsupported_tensor(&object.borrow().class) => {
            found.push((prefix, Found::Unsupported(object.borrow().class.clone())));
        }
        Value::Object(object) => {
            let object = object.borrow();
            match &object.state {
                Some(state) if is_pickled_module(state) => {
                    collect_module(state, &prefix, path, found)
                }
                // TorchScript objects and plain Python objects: their attribute dict.
                Some(Value::Dict(attrs)) => {
                    for (k, v) in attrs.borrow().iter() {
                        collect_tensors(v, join(&prefix, &key_name(k)), path, found);
                    }
                }
                // (dict, slots) or a custom __getstate__ result.
                Some(state) => collect_tensors(state, prefix.clone(), path, found),
                None => {}
            }
            for (i, item) in object.list_items.iter().enumerate() {
                collect_tensors(item, join(&prefix, &i.to_string()), path, found);
            }
            for (k, v) in &object.dict_items {
                collect_tensors(v, join(&prefix, &key_name(k)), path, found);
            }
        }
        _ => {}
    }
    if id.is_some() {
        path.pop();
    }
}

/// The `__dict__` of a pickled `torch.nn.Module`.
fn is_pickled_module(state: &Value) -> bool {
    ["_parameters", "_buffers", "_modules"]
        .iter()
        .all(|k| state.dict_get(k).is_some())
}

/// A pickled `nn.Module`, named like its `state_dict()`: parameters, persistent buffers, and
/// submodules recursively.
fn collect_module(
    state: &Value,
    prefix: &str,
    path: &mut Vec<usize>,
    found: &mut Vec<(String, Found)>,
) {
    let non_persistent: HashSet<String> = state
        .dict_get("_non_persistent_buffers_set")
        .and_then(|set| match set {
            Value::Object(o) => Some(o.borrow().list_items.clone()),
            other => other.items(),
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_text().map(str::to_string))
        .collect();
    for (field, skip) in [("_parameters", None), ("_buffers", Some(&non_persistent))] {
        let Some(Value::Dict(entries)) = state.dict_get(field) else {
            continue;
        };
        for (k, v) in entries.borrow().iter() {
            let name = key_name(k);
            if skip.is_some_and(|s| s.contains(&name)) {
                continue;
            }
            collect_tensors(v, join(prefix, &name), path, found);
        }
    }
    if let Some(Value::Dict(children)) = state.dict_get("_modules") {
        for (k, child) in children.borrow().iter() {
            collect_tensors(child, join(prefix, &key_name(k)), path, found);
        }
    }
}
