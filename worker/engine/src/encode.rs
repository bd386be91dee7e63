//! Polars results in Trino's terms: each column's Trino type, and its
//! values in the JSON encoding Trino's protocol uses (numbers, strings for
//! decimals, dates and timestamps, "NaN"/"Infinity" for non-finite
//! doubles, arrays as arrays, null as null).

use common::api::{Column, TrinoType};
use polars::prelude::{DataFrame, DataType, Series, TimeUnit};
use serde_json::Value;

use crate::error::{from_polars, EngineError};

/// The Trino type a polars column is returned as.
pub fn trino_type(dtype: &DataType) -> Result<TrinoType, EngineError> {
    Ok(match dtype {
        DataType::Boolean => TrinoType::Boolean,
        DataType::Int8 => TrinoType::Tinyint,
        DataType::Int16 | DataType::UInt8 => TrinoType::Smallint,
        DataType::Int32 | DataType::UInt16 => TrinoType::Integer,
        // Polars counts in unsigned integers; Trino's counts are bigint.
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => TrinoType::Bigint,
        DataType::Float32 => TrinoType::Real,
        DataType::Float64 => TrinoType::Double,
        DataType::Decimal(p, s) => TrinoType::Decimal {
            precision: *p as u32,
            scale: *s as u32,
        },
        DataType::String => TrinoType::Varchar(None),
        DataType::Date => TrinoType::Date,
        DataType::Datetime(unit, _) => TrinoType::Timestamp(precision(*unit)),
        DataType::List(inner) => TrinoType::Array(Box::new(trino_type(inner)?)),
        DataType::Null => TrinoType::Unknown,
        other => {
            return Err(EngineError::not_supported(format!(
                "a result column of type {other} (polars) has no Trino type here"
            )))
        }
    })
}

fn precision(unit: TimeUnit) -> u32 {
    match unit {
        TimeUnit::Milliseconds => 3,
        TimeUnit::Microseconds => 6,
        TimeUnit::Nanoseconds => 9,
    }
}

pub fn columns(df: &DataFrame) -> Result<Vec<Column>, EngineError> {
    df.columns()
        .iter()
        .map(|c| Ok(Column::new(c.name().as_str(), &trino_type(c.dtype())?)))
        .collect()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i32> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (proleptic Gregorian), after H. Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn format_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.fff` (as many fractional digits as `digits`) of
/// `ticks` since the epoch, `digits` being 3, 6 or 9.
pub fn format_timestamp(ticks: i64, digits: u32) -> String {
    let per_second = 10i64.pow(digits);
    let seconds = ticks.div_euclid(per_second);
    let fraction = ticks.rem_euclid(per_second);
    let days = seconds.div_euclid(86_400);
    let s = seconds.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}.{:0width$}",
        format_date(days),
        s / 3600,
        s / 60 % 60,
        s % 60,
        fraction,
        width = digits as usize
    )
}

fn double(v: f64) -> Value {
    if v.is_nan() {
        Value::from("NaN")
    } else if v.is_infinite() {
        Value::from(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        Value::from(v)
    }
}

/// The column's values in Trino's JSON encoding.
pub fn values(s: &Series) -> Result<Vec<Value>, EngineError> {
    let p = from_polars;
    let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
    Ok(match s.dtype() {
        DataType::Boolean => s
            .bool()
            .map_err(p)?
            .iter()
            .map(|v| opt(v.map(Value::from)))
            .collect(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let c = s.cast(&DataType::Int64).map_err(p)?;
            c.i64()
                .map_err(p)?
                .iter()
                .map(|v| opt(v.map(Value::from)))
                .collect()
        }
        DataType::UInt64 => s
            .u64()
            .map_err(p)?
            .iter()
            .map(|v| opt(v.map(Value::from)))
            .collect(),
        DataType::Float32 | DataType::Float64 => {
            let c = s.cast(&DataType::Float64).map_err(p)?;
            c.f64()
                .map_err(p)?
                .iter()
                .map(|v| opt(v.map(double)))
                .collect()
        }
        DataType::Decimal(_, scale) => {
            let scale = *scale;
            s.decimal()
                .map_err(p)?
                .physical()
                .iter()
                .map(|v| opt(v.map(|u| Value::from(trino_sql::decimal_text(u, scale as u32)))))
                .collect()
        }
        DataType::String => s
            .str()
            .map_err(p)?
            .iter()
            .map(|v| opt(v.map(Value::from)))
            .collect(),
        DataType::Date => s
            .date()
            .map_err(p)?
            .physical()
            .iter()
            .map(|v| opt(v.map(|d| Value::from(format_date(i64::from(d))))))
            .collect(),
        DataType::Datetime(unit, _) => {
            let digits = precision(*unit);
            s.datetime()
                .map_err(p)?
                .physical()
                .iter()
                .map(|v| opt(v.map(|t| Value::from(format_timestamp(t, digits)))))
                .collect()
        }
        DataType::List(_) => {
            let mut out = Vec::with_capacity(s.len());
            let list = s.list().map_err(p)?;
            for i in 0..list.len() {
                out.push(match list.get_as_series(i) {
                    Some(inner) => Value::Array(values(&inner)?),
                    None => Value::Null,
                });
            }
            out
        }
        DataType::Null => vec![Value::Null; s.len()],
        other => {
            return Err(EngineError::not_supported(format!(
                "a result column of type {other} (polars) has no Trino type here"
            )))
        }
    })
}

/// The rows of `df` (a page of the result), each a JSON array.
pub fn rows(df: &DataFrame) -> Result<Vec<Vec<Value>>, EngineError> {
    let columns: Vec<Vec<Value>> = df
        .columns()
        .iter()
        .map(|c| values(c.as_materialized_series()))
        .collect::<Result<_, _>>()?;
    let mut rows: Vec<Vec<Value>> = (0..df.height())
        .map(|_| Vec::with_capacity(columns.len()))
        .collect();
    for column in columns {
        for (row, value) in rows.iter_mut().zip(column) {
            row.push(value);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn dates_timestamps_and_decimals_are_written_as_trino_writes_them() {
        for s in [
            "1970-01-01",
            "1992-02-29",
            "1998-12-01",
            "2024-12-31",
            "1900-03-01",
        ] {
            assert_eq!(format_date(i64::from(parse_date(s).unwrap())), s);
        }
        assert_eq!(parse_date("1998-12-01"), Some(10_561));
        assert_eq!(parse_date("1998-13-01"), None);
        assert_eq!(format_timestamp(1_500, 3), "1970-01-01 00:00:01.500");
        assert_eq!(format_timestamp(-1, 3), "1969-12-31 23:59:59.999");
        assert_eq!(trino_sql::decimal_text(12345, 2), "123.45");
        assert_eq!(trino_sql::decimal_text(-5, 2), "-0.05");
        assert_eq!(trino_sql::decimal_text(7, 0), "7");
    }

    #[test]
    fn each_polars_type_has_its_trino_type_and_encoding() {
        let df = df!(
            "i" => [Some(1i32), None],
            "u" => [3u32, 4],
            "f" => [f64::NAN, 2.5],
            "s" => ["a", "b"],
            "b" => [true, false],
        )
        .unwrap();
        let names: Vec<String> = columns(&df)
            .unwrap()
            .into_iter()
            .map(|c| c.type_name)
            .collect();
        assert_eq!(names, ["integer", "bigint", "double", "varchar", "boolean"]);
        assert_eq!(
            rows(&df).unwrap(),
            vec![
                vec![
                    Value::from(1),
                    3.into(),
                    "NaN".into(),
                    "a".into(),
                    true.into()
                ],
                vec![Value::Null, 4.into(), 2.5.into(), "b".into(), false.into()],
            ]
        );
        let dec = Series::new("d".into(), [12345i128])
            .cast(&DataType::Decimal(10, 2))
            .unwrap();
        assert_eq!(trino_type(dec.dtype()).unwrap().name(), "decimal(10,2)");
    }
}
