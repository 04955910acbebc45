//! The WHERE of a newest-first page, holding only the filters a listing was given.
//!
//! Written as `($1 IS NULL OR status = $1)`, an absent filter still reads as a condition,
//! and neither database can then walk an index in id order: each page sorted every
//! matching row (a few milliseconds per request at a few thousand runs, growing with the
//! table). With only the given conditions, each listing walks one of the indexes made for
//! it (see migration `list_indexes`) and stops after `limit` rows.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

enum Arg {
    Text(String),
    Int(i64),
}

pub(super) struct Page {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Page {
    /// A page of rows that meet `fixed` (SQL without parameters), if given.
    pub fn new(fixed: Option<&str>) -> Self {
        Self {
            conditions: fixed.map(str::to_string).into_iter().collect(),
            args: Vec::new(),
        }
    }

    /// Adds `column = value` when there is a value.
    pub fn text_equals(self, column: &str, value: Option<&str>) -> Self {
        self.with(column, "=", value.map(|v| Arg::Text(v.to_string())))
    }

    /// Adds `column < value` when there is a value (the page cursor).
    pub fn text_below(self, column: &str, value: Option<String>) -> Self {
        self.with(column, "<", value.map(Arg::Text))
    }

    /// Adds `column = value` when there is a value.
    pub fn int_equals(self, column: &str, value: Option<i64>) -> Self {
        self.with(column, "=", value.map(Arg::Int))
    }

    fn with(mut self, column: &str, op: &str, value: Option<Arg>) -> Self {
        if let Some(value) = value {
            self.args.push(value);
            self.conditions
                .push(format!("{column} {op} ${}", self.args.len()));
        }
        self
    }

    /// `select` (up to its FROM) with this page's WHERE, newest first by `order_column`.
    pub fn sql(&self, select: &str, order_column: &str) -> String {
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        let next = self.args.len() + 1;
        format!(
            "{select}{filter} ORDER BY {order_column} DESC LIMIT ${next} OFFSET ${}",
            next + 1
        )
    }

    /// The query for `sql` (made by [`Page::sql`]) with this page's values bound.
    pub fn bind<'q>(
        &'q self,
        sql: &'q str,
        limit: u32,
        offset: u32,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        let mut query = sqlx::query(sql);
        for arg in &self.args {
            query = match arg {
                Arg::Text(text) => query.bind(text.as_str()),
                Arg::Int(int) => query.bind(*int),
            };
        }
        query.bind(i64::from(limit)).bind(i64::from(offset))
    }
}
