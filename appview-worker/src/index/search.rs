//! Full-text search over repositories (`repository_search`, SQLite FTS5 in
//! D1): what a person types becomes word-prefix terms, all required, ranked
//! by bm25 with a repository's name weighing most.

use super::browse::{RepositoryRow, REPOSITORY_FIELDS};
use crate::config::DB_BINDING;
use worker::{Env, Result};

/// At most this many words of a query are searched for.
const MAX_TERMS: usize = 8;

/// The FTS5 query for `text`: each word (letters and digits, as FTS5's
/// default tokenizer cuts them) as a quoted prefix term, so no character a
/// person types is FTS5 syntax. `None` when `text` holds no word.
pub fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(MAX_TERMS)
        .map(|word| format!("\"{}\"*", word.to_lowercase()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// One page of repositories matching `text`, best first, and how many match.
pub async fn search_repositories(
    env: &Env,
    text: &str,
    limit: u32,
    offset: u32,
) -> Result<(Vec<RepositoryRow>, u32)> {
    let Some(query) = fts_query(text) else {
        return Ok((Vec::new(), 0));
    };
    let db = env.d1(DB_BINDING)?;
    #[derive(serde::Deserialize)]
    struct Count {
        n: f64,
    }
    let count = db
        .prepare(
            "SELECT count(*) AS n FROM repository_search s JOIN users u ON u.did = s.owner_did
             WHERE repository_search MATCH ?1 AND u.handle IS NOT NULL AND u.deactivated = 0 AND u.deactivated = 0",
        )
        .bind(&[query.clone().into()])?;
    // Weights of handle, name and description in the rank.
    let page = db
        .prepare(format!(
            "{REPOSITORY_FIELDS}
             FROM repository_search s
             JOIN repositories r ON r.owner_did = s.owner_did AND r.name = s.name
             JOIN users u ON u.did = r.owner_did
             LEFT JOIN pulls p ON p.owner_did = r.owner_did AND p.repository = r.name
             WHERE repository_search MATCH ?1 AND u.handle IS NOT NULL AND u.deactivated = 0
             ORDER BY bm25(repository_search, 2.0, 4.0, 1.0), pulls DESC, r.updated_at DESC
             LIMIT ?2 OFFSET ?3"
        ))
        .bind(&[query.into(), limit.into(), offset.into()])?;
    let (rows, total) = futures_util::join!(page.all(), count.first::<Count>(None));
    Ok((rows?.results()?, total?.map_or(0, |c| c.n as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_quoted_prefix_terms_and_nothing_else_gets_through() {
        assert_eq!(fts_query("webap").as_deref(), Some("\"webap\"*"));
        assert_eq!(
            fts_query("alice.test/Web-App").as_deref(),
            Some("\"alice\"* \"test\"* \"web\"* \"app\"*")
        );
        // FTS5 operators and quotes are only separators here.
        assert_eq!(
            fts_query("\"a\" OR b* NEAR(c) -d ^e").as_deref(),
            Some("\"a\"* \"or\"* \"b\"* \"near\"* \"c\"* \"d\"* \"e\"*")
        );
        assert_eq!(fts_query("  ./:*  "), None);
        assert_eq!(
            fts_query(&"w ".repeat(100)).unwrap().matches('*').count(),
            MAX_TERMS
        );
        assert_eq!(fts_query("ünïcode").as_deref(), Some("\"ünïcode\"*"));
    }
}
