//! The SQL surface the room store needs: a Durable Object's SQLite storage in production,
//! rusqlite in native tests.

/// One SQL value, as bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer (the Workers runtime keeps integers exact up to 2^53).
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Integer(i) => u64::try_from(*i).ok(),
            // The runtime may hand back integral doubles.
            Self::Real(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.007_199_254_740_992e15 => {
                Some(*f as u64)
            }
            _ => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Takes the text out of the value, if it is text.
    pub fn into_text(self) -> Option<String> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1): SQLite values cross to the
/// runtime as numbers.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl From<u64> for SqlValue {
    fn from(value: u64) -> Self {
        // Sequence numbers, times and ids stay far below 2^53; saturate there rather than hand the
        // runtime a number it cannot hold (it would round it and warn).
        Self::Integer(value.min(MAX_SAFE_INTEGER) as i64)
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// A storage failure. The operation that hit it was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("storage failed: {0}")]
    Backend(String),
    /// A row did not have the expected shape (a bug or a corrupted database).
    #[error("unexpected row in storage: {0}")]
    BadRow(&'static str),
}

/// Executes one SQL statement with positional `?` parameters and returns all rows.
///
/// Implementations run synchronously: a Durable Object's SQLite storage is synchronous, and
/// keeping the trait sync means no borrow of room state is ever held across an `.await`.
pub trait Sql {
    /// Runs `sql` with `params` bound to its `?` placeholders.
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError>;

    /// Rows read and written by every statement so far (the storage's billable units).
    fn counts(&self) -> SqlCounts {
        SqlCounts::default()
    }
}

/// Rows a storage read and wrote, as the runtime bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqlCounts {
    /// Rows read.
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
}

impl<T: Sql + ?Sized> Sql for std::rc::Rc<T> {
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        (**self).query(sql, params)
    }

    fn counts(&self) -> SqlCounts {
        (**self).counts()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A rusqlite-backed [`Sql`] for native tests: the same SQL, a real SQLite engine.

    use super::*;
    use rusqlite::types::{Value, ValueRef};

    /// An in-memory SQLite database that counts rows like the runtime does.
    pub struct MemorySql(rusqlite::Connection, std::cell::Cell<SqlCounts>);

    impl MemorySql {
        pub fn new() -> Self {
            Self(rusqlite::Connection::open_in_memory().expect("open in-memory sqlite"), Default::default())
        }
    }

    impl Sql for MemorySql {
        fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
            let backend = |e: rusqlite::Error| StoreError::Backend(e.to_string());
            let mut statement = self.0.prepare(sql).map_err(backend)?;
            let columns = statement.column_count();
            let params: Vec<Value> = params
                .iter()
                .map(|p| match p {
                    SqlValue::Null => Value::Null,
                    SqlValue::Integer(i) => Value::Integer(*i),
                    SqlValue::Real(f) => Value::Real(*f),
                    SqlValue::Text(t) => Value::Text(t.clone()),
                    SqlValue::Blob(b) => Value::Blob(b.clone()),
                })
                .collect();
            let mut rows = statement.query(rusqlite::params_from_iter(params)).map_err(backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i).map_err(backend)? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(i) => SqlValue::Integer(i),
                        ValueRef::Real(f) => SqlValue::Real(f),
                        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    });
                }
                out.push(values);
            }
            drop(rows);
            let mut counts = self.1.get();
            counts.rows_read += out.len() as u64;
            if !statement.readonly() {
                counts.rows_written += self.0.changes();
            }
            self.1.set(counts);
            Ok(out)
        }

        fn counts(&self) -> SqlCounts {
            self.1.get()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_saturate_at_what_a_js_number_holds() {
        assert_eq!(SqlValue::from(7u64), SqlValue::Integer(7));
        assert_eq!(SqlValue::from(MAX_SAFE_INTEGER), SqlValue::Integer(9_007_199_254_740_991));
        assert_eq!(SqlValue::from(u64::MAX), SqlValue::Integer(9_007_199_254_740_991));
    }
}
