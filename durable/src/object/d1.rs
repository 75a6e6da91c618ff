//! Runs the index's [`Statement`]s on D1.

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env, Result};

use crate::index::Statement;
use crate::{SqlValue, DB_BINDING};

/// The index database.
pub fn database(env: &Env) -> Result<D1Database> {
    env.d1(DB_BINDING)
}

/// Prepares `statement` with its parameters bound (numbers as doubles: D1 binds 32-bit integers).
pub fn prepare(db: &D1Database, statement: &Statement) -> Result<D1PreparedStatement> {
    let params: Vec<JsValue> = statement.params.iter().map(to_js).collect();
    db.prepare(&statement.sql).bind(&params)
}

fn to_js(value: &SqlValue) -> JsValue {
    match value {
        SqlValue::Null => JsValue::NULL,
        SqlValue::Integer(i) => JsValue::from(*i as f64),
        SqlValue::Real(f) => JsValue::from(*f),
        SqlValue::Text(text) => JsValue::from(text.as_str()),
        SqlValue::Blob(bytes) => worker::js_sys::Uint8Array::from(bytes.as_slice()).into(),
    }
}
