//! Trino's result types as its client protocol carries them: a result
//! column's type name and type signature, which clients read to turn the
//! JSON values of `data` into their own (trino-python-client maps
//! `decimal` to `Decimal`, `date` to `date`, `timestamp(3)` to `datetime`
//! by the signature's raw type and arguments).

use serde::{Deserialize, Serialize};

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    pub name: String,
    /// The type as Trino prints it: `bigint`, `varchar`, `decimal(12,2)`,
    /// `timestamp(3)`, `array(varchar)`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub type_signature: TypeSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeSignature {
    pub raw_type: String,
    pub arguments: Vec<TypeArgument>,
}

/// A type's parameter: a number (`varchar(25)`, `decimal(12,2)`,
/// `timestamp(3)`) or a type (`array(bigint)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TypeArgument {
    Long(i64),
    Type(TypeSignature),
}

/// Trino's length of an unbounded `varchar`.
pub const UNBOUNDED_VARCHAR: i64 = i32::MAX as i64;

/// A Trino type this engine produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrinoType {
    Boolean,
    Tinyint,
    Smallint,
    Integer,
    Bigint,
    Real,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// `None`: unbounded.
    Varchar(Option<u32>),
    Date,
    /// Fractional digits of the seconds.
    Timestamp(u32),
    Array(Box<TrinoType>),
    /// A column of nulls only (`SELECT NULL`).
    Unknown,
}

impl TrinoType {
    pub fn name(&self) -> String {
        match self {
            TrinoType::Boolean => "boolean".into(),
            TrinoType::Tinyint => "tinyint".into(),
            TrinoType::Smallint => "smallint".into(),
            TrinoType::Integer => "integer".into(),
            TrinoType::Bigint => "bigint".into(),
            TrinoType::Real => "real".into(),
            TrinoType::Double => "double".into(),
            TrinoType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            TrinoType::Varchar(None) => "varchar".into(),
            TrinoType::Varchar(Some(n)) => format!("varchar({n})"),
            TrinoType::Date => "date".into(),
            TrinoType::Timestamp(p) => format!("timestamp({p})"),
            TrinoType::Array(e) => format!("array({})", e.name()),
            TrinoType::Unknown => "unknown".into(),
        }
    }

    pub fn signature(&self) -> TypeSignature {
        let (raw, arguments) = match self {
            TrinoType::Decimal { precision, scale } => (
                "decimal",
                vec![
                    TypeArgument::Long(i64::from(*precision)),
                    TypeArgument::Long(i64::from(*scale)),
                ],
            ),
            TrinoType::Varchar(n) => (
                "varchar",
                vec![TypeArgument::Long(n.map_or(UNBOUNDED_VARCHAR, i64::from))],
            ),
            TrinoType::Timestamp(p) => ("timestamp", vec![TypeArgument::Long(i64::from(*p))]),
            TrinoType::Array(e) => ("array", vec![TypeArgument::Type(e.signature())]),
            other => {
                return TypeSignature {
                    raw_type: other.name(),
                    arguments: Vec::new(),
                }
            }
        };
        TypeSignature {
            raw_type: raw.into(),
            arguments,
        }
    }
}

impl Column {
    pub fn new(name: impl Into<String>, t: &TrinoType) -> Column {
        Column {
            name: name.into(),
            type_name: t.name(),
            type_signature: t.signature(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_trinos() {
        let c = Column::new(
            "price",
            &TrinoType::Decimal {
                precision: 12,
                scale: 2,
            },
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"name": "price", "type": "decimal(12,2)", "typeSignature": {
                "rawType": "decimal", "arguments": [{"kind": "LONG", "value": 12}, {"kind": "LONG", "value": 2}]}})
        );
        let c = Column::new(
            "tags",
            &TrinoType::Array(Box::new(TrinoType::Varchar(None))),
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap()["typeSignature"],
            serde_json::json!({"rawType": "array", "arguments": [{"kind": "TYPE", "value":
                {"rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}}]})
        );
        assert_eq!(TrinoType::Timestamp(3).name(), "timestamp(3)");
        assert_eq!(TrinoType::Bigint.signature().arguments, vec![]);
    }
}
