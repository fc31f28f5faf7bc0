//! How the pages' parameters read: the `deserialize_with` functions of their serde types
//! (each page declares its own, read by poem's `Query`, `Path` and `Form` extractors), and
//! the run id of a path. An empty value counts as absent (an empty filter field of a form);
//! a value that cannot be what it names is refused with a sentence for the reader, which
//! [`crate::ErrorPages`] shows on a 400 page.

use std::fmt::Display;
use std::str::FromStr;

use joblog::RunStatus;
use poem::web::Path;
use poem::{FromRequest, Request, RequestBody};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use crate::PageError;

/// Longest search text kept (longer text is cut).
const MAX_SEARCH: usize = 200;
/// Largest page size a URL may ask for.
const MAX_PER: u64 = 100;

/// The value trimmed, or `None` when empty.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(d)?;
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// An optional number: `name must be a number, not "…".` otherwise.
fn number<'de, D, T>(d: D, name: &str) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    present(d)?
        .map(|v| {
            v.parse()
                .map_err(|_| D::Error::custom(format!("{name} must be a number, not {v:?}.")))
        })
        .transpose()
}

/// The run list's `before` cursor (a run id).
pub(crate) fn before<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d, "before")
}

/// The run list's `after` cursor (a run id).
pub(crate) fn after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d, "after")
}

/// The detail page's `from` (a line id).
pub(crate) fn from<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d, "from")
}

/// A status by name, in any case.
pub(crate) fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RunStatus>, D::Error> {
    present(d)?
        .map(|v| {
            v.parse().map_err(|_| {
                D::Error::custom(format!(
                    "Unknown status {v:?}: use new, processing, success or error."
                ))
            })
        })
        .transpose()
}

/// Search text: trimmed, at most [`MAX_SEARCH`] characters.
pub(crate) fn search<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(present(d)?
        .map(|q| q.chars().take(MAX_SEARCH).collect())
        .unwrap_or_default())
}

/// A page size, clamped to 1..=100; anything that is not one is ignored (the default size).
pub(crate) fn page_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(present(d)?
        .and_then(|p| p.parse::<u64>().ok())
        .map(|p| p.clamp(1, MAX_PER)))
}

/// Whatever the value is, empty meaning absent.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(d)?;
    Ok((!value.is_empty()).then_some(value))
}

/// A run id from the `:id` path segment. A segment that is no id names no run: 404, as
/// for an id no run has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunId(pub(crate) i64);

impl<'a> FromRequest<'a> for RunId {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        match Path::<i64>::from_request(req, body).await {
            Ok(Path(id)) => Ok(RunId(id)),
            Err(_) => Err(not_a_run(req.raw_path_param("id").unwrap_or_default()).into()),
        }
    }
}

/// The 404 of a run that does not exist.
pub(crate) fn not_a_run(id: impl Display) -> PageError {
    PageError::not_found(format!("There is no run {id}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{jobs::ActionForm, run::DetailParams, runs::ListParams};

    fn list(query: &str) -> Result<ListParams, String> {
        parse(query)
    }

    fn parse<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
        // What poem's `Query` does.
        let req = Request::builder().uri_str(format!("/?{query}")).finish();
        req.params::<T>().map_err(|e| e.to_string())
    }

    #[test]
    fn list_parameters_read_as_before() {
        let p = list("status=ERROR&job=CleanupJob&q=++run+17++&before=12&after=3&per=100000").unwrap();
        assert_eq!(p.status, Some(RunStatus::Error));
        assert_eq!(p.job.as_deref(), Some("CleanupJob"));
        assert_eq!(p.q, "run 17");
        assert_eq!((p.before, p.after, p.per), (Some(12), Some(3), Some(100)));
        let p = list("status=&job=&q=&before=&after=&per=abc&zzz=1").unwrap();
        assert_eq!(
            (p.status, p.job, p.q.as_str(), p.before, p.after, p.per),
            (None, None, "", None, None, None)
        );
        assert_eq!(list("per=-5").unwrap().per, None);
        assert_eq!(list("per=0").unwrap().per, Some(1));
        assert_eq!(
            list(&format!("q={}", "x".repeat(500))).unwrap().q.len(),
            MAX_SEARCH
        );
        assert_eq!(list("q=%FF%FE").unwrap().q, "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn an_empty_token_is_no_token() {
        assert_eq!(parse::<ActionForm>("csrf_token=").unwrap().csrf_token, None);
        assert_eq!(parse::<ActionForm>("").unwrap().csrf_token, None);
        assert_eq!(
            parse::<ActionForm>("csrf_token=ab")
                .unwrap()
                .csrf_token
                .as_deref(),
            Some("ab")
        );
    }

    #[test]
    fn bad_values_are_explained() {
        assert_eq!(
            list("status=finished").unwrap_err(),
            "Unknown status \"finished\": use new, processing, success or error."
        );
        assert_eq!(
            list("before=abc").unwrap_err(),
            "before must be a number, not \"abc\"."
        );
        assert_eq!(
            list("after=1e9").unwrap_err(),
            "after must be a number, not \"1e9\"."
        );
        assert!(list("before=99999999999999999999").is_err());
        assert_eq!(
            parse::<DetailParams>("from=zz").unwrap_err(),
            "from must be a number, not \"zz\"."
        );
    }
}
