//! A row as columns, in [`FIELDS`](crate::FIELDS) order: how storage reads and writes a [`CrmRow`](crate::CrmRow)
//! without listing its fields. The storage side implements [`ColumnSource`] (one stored row) and [`ColumnSink`]
//! (rows to store); `crm_row!` implements `CrmRow::read_columns` and `CrmRow::write_columns` over them, field by
//! field, through each field type's [`Column`] impl. A column is one of five shapes: a UUID, a whole number, text
//! (the stage and the decimal travel as text), a timestamp, or a JSON object.

use crate::PipelineStage;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// One stored row's columns, by index.
pub trait ColumnSource {
    type Error;
    fn uuid(&self, index: usize) -> Result<Uuid, Self::Error>;
    fn int(&self, index: usize) -> Result<i64, Self::Error>;
    fn text(&self, index: usize) -> Result<Option<String>, Self::Error>;
    fn timestamp(&self, index: usize) -> Result<Option<DateTime<Utc>>, Self::Error>;
    fn object(&self, index: usize) -> Result<Map<String, Value>, Self::Error>;
    /// A column holds what its field cannot (null where the field may not be, an unknown stage).
    fn invalid(&self, index: usize, why: &str) -> Self::Error;
}

/// Where rows' columns go, by index, one row after another. Text and objects are lent for as long as the rows
/// (`'r`), so a sink can keep references instead of copies.
pub trait ColumnSink<'r> {
    fn uuid(&mut self, index: usize, value: Uuid);
    fn int(&mut self, index: usize, value: i64);
    fn text(&mut self, index: usize, value: Option<&'r str>);
    fn timestamp(&mut self, index: usize, value: Option<DateTime<Utc>>);
    fn object(&mut self, index: usize, value: &'r Map<String, Value>);
}

/// A field type's column.
pub trait Column: Sized {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error>;
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize);
}

impl Column for Uuid {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.uuid(index)
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.uuid(index, *self);
    }
}

impl Column for i64 {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.int(index)
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.int(index, *self);
    }
}

impl Column for Option<String> {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.text(index)
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.text(index, self.as_deref());
    }
}

impl Column for String {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.text(index)?.ok_or_else(|| source.invalid(index, "null in a column that may not be"))
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.text(index, Some(self));
    }
}

impl Column for PipelineStage {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        let text = String::read(source, index)?;
        text.parse().map_err(|_| source.invalid(index, "not a pipeline stage"))
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.text(index, Some(self.as_str()));
    }
}

impl Column for Option<DateTime<Utc>> {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.timestamp(index)
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.timestamp(index, *self);
    }
}

impl Column for DateTime<Utc> {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.timestamp(index)?.ok_or_else(|| source.invalid(index, "null in a column that may not be"))
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.timestamp(index, Some(*self));
    }
}

impl Column for Map<String, Value> {
    fn read<S: ColumnSource>(source: &S, index: usize) -> Result<Self, S::Error> {
        source.object(index)
    }
    fn write<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K, index: usize) {
        sink.object(index, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CrmRow;

    /// A row's columns held as JSON values, standing in for a database row.
    #[derive(Default)]
    struct Cells(Vec<Value>);

    impl ColumnSink<'_> for Cells {
        fn uuid(&mut self, _: usize, value: Uuid) {
            self.0.push(Value::from(value.to_string()));
        }
        fn int(&mut self, _: usize, value: i64) {
            self.0.push(Value::from(value));
        }
        fn text(&mut self, _: usize, value: Option<&str>) {
            self.0.push(value.map_or(Value::Null, Value::from));
        }
        fn timestamp(&mut self, _: usize, value: Option<DateTime<Utc>>) {
            self.0.push(value.map_or(Value::Null, |t| Value::from(t.to_rfc3339())));
        }
        fn object(&mut self, _: usize, value: &Map<String, Value>) {
            self.0.push(Value::Object(value.clone()));
        }
    }

    impl ColumnSource for Cells {
        type Error = String;
        fn uuid(&self, i: usize) -> Result<Uuid, String> {
            self.0[i].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("{i}"))
        }
        fn int(&self, i: usize) -> Result<i64, String> {
            self.0[i].as_i64().ok_or_else(|| format!("{i}"))
        }
        fn text(&self, i: usize) -> Result<Option<String>, String> {
            Ok(self.0[i].as_str().map(str::to_owned))
        }
        fn timestamp(&self, i: usize) -> Result<Option<DateTime<Utc>>, String> {
            Ok(self.0[i].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc)))
        }
        fn object(&self, i: usize) -> Result<Map<String, Value>, String> {
            self.0[i].as_object().cloned().ok_or_else(|| format!("{i}"))
        }
        fn invalid(&self, i: usize, why: &str) -> String {
            format!("column {i}: {why}")
        }
    }

    #[test]
    fn a_row_round_trips_through_its_columns_one_per_field() {
        let row = crate::tests::sample();
        let mut cells = Cells::default();
        row.write_columns(&mut cells);
        assert_eq!(cells.0.len(), crate::FIELDS.len());
        assert_eq!(CrmRow::read_columns(&cells), Ok(row));
        cells.0[16] = Value::from("closed");
        assert_eq!(CrmRow::read_columns(&cells), Err("column 16: not a pipeline stage".to_owned()));
    }
}
