//! Reading records from a PDS by key order (`com.atproto.repo.listRecords`,
//! public, 100 records a page at most). A PDS keeps each collection sorted
//! by record key, so records whose keys share a prefix (one repository's
//! tags and manifests, see `atcr_protocol::manifest::repository_key_prefix`)
//! are read as one range, in pages bounded by the answer, however many
//! other records the account holds.

use crate::call;
use atcr_protocol::Did;
use serde_json::Value;
use worker::Fetch;

/// The most records one `listRecords` page may hold.
const PAGE: usize = 100;

/// One page (up to 100) of the records of `collection` in `did`'s
/// repository at `pds`, newest key first: the records as the PDS wrote them
/// (`uri`, `cid`, `value`) and the cursor of the next page. Callers decide
/// how many pages they may read.
pub async fn list_records_page(
    pds: &str,
    did: &Did,
    collection: &str,
    cursor: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), String> {
    let (records, next) = list(pds, did, collection, cursor, false, PAGE).await?;
    Ok((records, next))
}

/// Records of one key range, in key order, and whether more follow.
pub struct KeyRange {
    pub records: Vec<Value>,
    /// More records of the range follow the last one returned.
    pub more: bool,
}

/// The records of `collection` whose keys start with `prefix`, in key
/// order, beginning after the key `prefix + after` (or at the start of the
/// range), at most `max` of them: `ceil((max + 1) / 100)` requests at most.
pub async fn records_with_prefix(
    pds: &str,
    did: &Did,
    collection: &str,
    prefix: &str,
    after: Option<&str>,
    max: usize,
) -> Result<KeyRange, String> {
    // Keys are compared as strings: every key of the range sorts after the
    // bare prefix, and the range ends at the first key without it.
    let mut cursor = format!("{prefix}{}", after.unwrap_or_default());
    let mut records = Vec::new();
    loop {
        // One more than needed, to learn whether more follow.
        let want = (max + 1 - records.len()).min(PAGE);
        let (page, next) = list(pds, did, collection, Some(&cursor), true, want).await?;
        for record in page {
            let key = record_key(&record).to_string();
            if !key.starts_with(prefix) {
                return Ok(KeyRange {
                    records,
                    more: false,
                });
            }
            if records.len() == max {
                return Ok(KeyRange {
                    records,
                    more: true,
                });
            }
            cursor = key;
            records.push(record);
        }
        // A PDS may answer fewer than asked; only its cursor says whether
        // the collection goes on.
        if next.is_none() {
            return Ok(KeyRange {
                records,
                more: false,
            });
        }
    }
}

/// The record key at the end of a record's `at://` URI.
fn record_key(record: &Value) -> &str {
    record["uri"]
        .as_str()
        .and_then(|uri| uri.rsplit('/').next())
        .unwrap_or_default()
}

/// One `listRecords` call: keys below `cursor` newest first, or with
/// `ascending`, keys above it in order; and the cursor of the next page.
async fn list(
    pds: &str,
    did: &Did,
    collection: &str,
    cursor: Option<&str>,
    ascending: bool,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), String> {
    let mut url = format!(
        "{pds}/xrpc/com.atproto.repo.listRecords?repo={did}&collection={collection}&limit={limit}"
    );
    if ascending {
        url.push_str("&reverse=true");
    }
    if let Some(c) = cursor {
        url.push_str("&cursor=");
        url.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
    }
    let parsed = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let mut resp = call(Fetch::Url(parsed))
        .await
        .map_err(|e| format!("the PDS {pds} is unreachable: {e}"))?;
    if resp.status_code() != 200 {
        return Err(format!(
            "the PDS {pds} answered {} to listRecords",
            resp.status_code()
        ));
    }
    let page: Value = resp.json().await.map_err(|e| e.to_string())?;
    let records = page["records"].as_array().cloned().unwrap_or_default();
    // An empty page ends the listing, whatever cursor it carries.
    let next = match records.is_empty() {
        true => None,
        false => page["cursor"].as_str().map(str::to_string),
    };
    Ok((records, next))
}
