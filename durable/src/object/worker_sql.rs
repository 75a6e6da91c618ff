//! [`Sql`] over a Durable Object's SQLite storage (`ctx.storage.sql`).

use worker::{SqlStorage, SqlStorageValue};

use crate::{Sql, SqlCounts, SqlValue, StoreError};

/// The object's SQLite storage. Statements run synchronously and commit with the current event,
/// before any frame the event sends leaves the object (the runtime's output gate).
#[derive(Clone, Debug)]
pub struct WorkerSql(SqlStorage, std::rc::Rc<std::cell::Cell<SqlCounts>>);

impl WorkerSql {
    /// The object's SQL storage.
    pub fn new(storage: SqlStorage) -> Self {
        Self(storage, Default::default())
    }
}

impl Sql for WorkerSql {
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        let bindings: Vec<SqlStorageValue> = params.iter().cloned().map(to_storage).collect();
        let cursor = self.0.exec(sql, bindings).map_err(backend)?;
        let rows = cursor
            .raw()
            .map(|row| row.map(|values| values.into_iter().map(from_storage).collect()).map_err(backend))
            .collect();
        // The cursor's counts are complete once every row was read.
        let mut counts = self.1.get();
        let (read, written) = (cursor.rows_read() as u64, cursor.rows_written() as u64);
        counts.rows_read += read;
        counts.rows_written += written;
        self.1.set(counts);
        // Which statements spend the billed rows: `LOG_LEVEL=debug` (docs/cost.md).
        tracing::debug!(sql, rows_read = read, rows_written = written, "sql");
        rows
    }

    fn counts(&self) -> SqlCounts {
        self.1.get()
    }
}

fn backend(error: worker::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn to_storage(value: SqlValue) -> SqlStorageValue {
    match value {
        SqlValue::Null => SqlStorageValue::Null,
        SqlValue::Integer(i) => SqlStorageValue::Integer(i),
        SqlValue::Real(f) => SqlStorageValue::Float(f),
        SqlValue::Text(t) => SqlStorageValue::String(t),
        SqlValue::Blob(b) => SqlStorageValue::Blob(b),
    }
}

fn from_storage(value: SqlStorageValue) -> SqlValue {
    match value {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Boolean(b) => SqlValue::Integer(i64::from(b)),
        SqlStorageValue::Integer(i) => SqlValue::Integer(i),
        SqlStorageValue::Float(f) => SqlValue::Real(f),
        SqlStorageValue::String(t) => SqlValue::Text(t),
        SqlStorageValue::Blob(b) => SqlValue::Blob(b),
    }
}
