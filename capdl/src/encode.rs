//! [`Spec`] to the postcard bytes of [`crate::model`], and back (the way
//! back goes through [`SpecReader`] only, as the loader's does).

use crate::model::{
    CapRecord, FillRecord, Header, ModelError, ObjectRecord, SpecReader, FORMAT_VERSION, MAGIC,
};
use crate::spec::{Fill, Object, Spec};

/// Why a spec cannot be serialized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More records of one kind than a `u32` counts.
    #[error("too many {0} to serialize")]
    TooMany(&'static str),
    /// postcard refused a value (it does not, for these types).
    #[error("postcard: {0}")]
    Postcard(String),
}

fn count(n: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooMany(what))
}

fn push<T: serde::Serialize>(out: Vec<u8>, value: &T) -> Result<Vec<u8>, EncodeError> {
    postcard::to_extend(value, out).map_err(|e| EncodeError::Postcard(e.to_string()))
}

/// Serializes `spec`.
pub fn encode(spec: &Spec) -> Result<Vec<u8>, EncodeError> {
    let caps: Vec<CapRecord> = spec
        .objects
        .iter()
        .enumerate()
        .flat_map(|(holder, object)| {
            object.slots.iter().map(move |(slot, cap)| CapRecord {
                holder: holder as u32,
                slot: *slot,
                cap: *cap,
            })
        })
        .collect();
    let fills: Vec<FillRecord<'_>> = spec
        .objects
        .iter()
        .enumerate()
        .flat_map(|(frame, object)| {
            object.fills.iter().map(move |fill| FillRecord {
                frame: frame as u32,
                dest_offset: fill.dest_offset,
                length: fill.length,
                file: &fill.file,
                file_offset: fill.file_offset,
            })
        })
        .collect();
    let header = Header {
        magic: MAGIC,
        version: FORMAT_VERSION,
        object_count: count(spec.objects.len(), "objects")?,
        cap_count: count(caps.len(), "caps")?,
        fill_count: count(fills.len(), "frame fills")?,
        irq_count: count(spec.irqs.len(), "IRQs")?,
    };
    let mut out = push(Vec::new(), &header)?;
    for object in &spec.objects {
        out = push(
            out,
            &ObjectRecord {
                name: &object.name,
                index: object.index,
                kind: object.kind.clone(),
                untyped: object.untyped,
                elf: object.elf.as_deref(),
            },
        )?;
    }
    for cap in &caps {
        out = push(out, cap)?;
    }
    for fill in &fills {
        out = push(out, fill)?;
    }
    for irq in &spec.irqs {
        out = push(out, irq)?;
    }
    Ok(out)
}

/// Rebuilds a [`Spec`] from its bytes, reading them with [`SpecReader`].
pub fn decode(bytes: &[u8]) -> Result<Spec, ModelError> {
    let reader = SpecReader::new(bytes)?;
    let mut objects: Vec<Object> = reader
        .objects()
        .map(|record| Object {
            name: record.name.to_string(),
            index: record.index,
            kind: record.kind,
            untyped: record.untyped,
            elf: record.elf.map(str::to_string),
            fills: Vec::new(),
            slots: Default::default(),
        })
        .collect();
    for record in reader.caps() {
        objects[record.holder as usize]
            .slots
            .insert(record.slot, record.cap);
    }
    for record in reader.fills() {
        objects[record.frame as usize].fills.push(Fill {
            dest_offset: record.dest_offset,
            length: record.length,
            file: record.file.to_string(),
            file_offset: record.file_offset,
        });
    }
    Ok(Spec {
        objects,
        irqs: reader.irqs().collect(),
    })
}
