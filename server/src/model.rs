//! What every session and write is checked against: the schema (the base schema followed by every
//! applied migration) and the sync rules over it. A live migration replaces the whole model at once;
//! a session keeps the model it started with and is closed (1012) when the model changes, so that it
//! reconnects and takes the new one.

use std::sync::{Arc, RwLock};

use sqlite_ext::Schema;

use crate::error::Result;
use crate::rules::Rules;

/// One consistent schema and rule set.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) schema: Arc<Schema>,
    pub(crate) rules: Arc<Rules>,
    /// `schema.fingerprint()`, computed once.
    pub(crate) fingerprint: String,
    /// Whether migrations moved the schema away from the base one.
    pub(crate) migrated: bool,
}

/// The current model, and what a new one is built from.
#[derive(Debug)]
pub(crate) struct Models {
    current: RwLock<Arc<Model>>,
    /// The base schema (`domain.sql` or the configured one).
    pub(crate) base: Schema,
    rules_text: String,
}

impl Models {
    pub(crate) fn new(base: Schema, schema: Schema, rules_text: String) -> Result<Models> {
        let first = build(&base, &rules_text, schema)?;
        Ok(Models { current: RwLock::new(Arc::new(first)), base, rules_text })
    }

    /// A model over `schema` with the configured rules (refused if the rules do not fit it).
    pub(crate) fn build(&self, schema: Schema) -> Result<Model> {
        build(&self.base, &self.rules_text, schema)
    }

    pub(crate) fn get(&self) -> Arc<Model> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn set(&self, model: Model) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
    }
}

fn build(base: &Schema, rules_text: &str, schema: Schema) -> Result<Model> {
    let rules = Arc::new(Rules::from_toml(rules_text, &schema)?);
    Ok(Model {
        fingerprint: schema.fingerprint(),
        migrated: schema.sql() != base.sql(),
        schema: Arc::new(schema),
        rules,
    })
}
