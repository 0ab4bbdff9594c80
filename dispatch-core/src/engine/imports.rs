//! Imports from other trackers (see [`crate::import`]).

use super::Dispatch;
use crate::error::Result;
use crate::import::ImportReport;

impl Dispatch {
    /// Imports a Linear CSV export; `dry_run` reports what would be created and writes nothing.
    pub async fn import_linear(&self, csv: &[u8], dry_run: bool) -> Result<ImportReport> {
        crate::import::import_linear(
            &**self.store(),
            self.workspace().id,
            csv,
            dry_run,
            self.now(),
        )
        .await
    }
}
