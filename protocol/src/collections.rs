//! NSIDs of the record collections ATCR reads and writes (their lexicons
//! are in `lexicons/`), named once for the appview, the hold and the tests.

pub const MANIFEST: &str = "io.atcr.manifest";
pub const TAG: &str = "io.atcr.tag";
pub const PROFILE: &str = "io.atcr.sailor.profile";
pub const STAR: &str = "io.atcr.sailor.star";
pub const REPO_PAGE: &str = "io.atcr.repo.page";
pub const HOLD: &str = "io.atcr.hold";
pub const HOLD_CREW: &str = "io.atcr.hold.crew";
