//! Cursor pagination (docs/contract.md §2): `?limit=` 1..=200 (default 50) and an opaque `?cursor=`.
//!
//! A cursor is the URL-safe base64 of the last item's id; ids are UUIDv7, so they order by creation.

use crate::error::{ApiError, FieldError};
use base64::Engine;
use std::collections::HashMap;
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

pub fn encode(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode(cursor: Option<&str>) -> Result<Option<Uuid>, FieldError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| FieldError::new("cursor", "is not a cursor this API returned"))
}

pub fn limit(raw: Option<&str>) -> Result<i64, FieldError> {
    match raw {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
        },
    }
}

/// Splits a page fetched with `limit + 1` rows into the page and the next cursor.
pub fn page<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(|last| encode(id(last)));
        (items, next)
    } else {
        (items, None)
    }
}

/// The paging parameters of a list request.
#[derive(Debug, Clone, Copy)]
pub struct PageParams {
    pub limit: i64,
    /// Items strictly after (older than, for newest-first lists) this id.
    pub after: Option<Uuid>,
}

/// Reads `limit` and `cursor`, adding their errors to `errors` (the caller's other query errors) so one 422 names
/// every bad parameter.
pub fn params(query: &HashMap<String, String>, mut errors: Vec<FieldError>) -> Result<PageParams, ApiError> {
    let limit = limit(query.get("limit").map(String::as_str)).map_err(|e| errors.push(e)).ok();
    let after = decode(query.get("cursor").map(String::as_str)).map_err(|e| errors.push(e)).ok();
    match (limit, after) {
        (Some(limit), Some(after)) if errors.is_empty() => Ok(PageParams { limit, after }),
        _ => Err(ApiError::Validation(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_named() {
        let id = Uuid::now_v7();
        assert_eq!(decode(Some(&encode(id))).unwrap(), Some(id));
        assert_eq!(decode(None).unwrap(), None);
        assert_eq!(decode(Some("!!")).unwrap_err().field, "cursor");
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "x"] {
            assert_eq!(limit(Some(bad)).unwrap_err().field, "limit");
        }
    }

    #[test]
    fn page_gives_a_cursor_only_when_more_exist() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (items, next) = page(ids.clone(), 2, |u| *u);
        assert_eq!(items.len(), 2);
        assert_eq!(next, Some(encode(ids[1])));
        assert_eq!(page(ids, 3, |u| *u).1, None);
    }
}
