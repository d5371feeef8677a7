//! Hidden tests for kata 25: wherever `save` is dropped, the index lists the document exactly
//! when its file exists, no temporary file is left, and a reader sees the old version or the new
//! one in full.

use std::time::Duration;

use capstone_document_store::{DocStore, FakeFs, Index};
use kata_support::{Outcome, assert_cancel_safe, hidden_test};

const ID: &str = "invoice-42";
const OLD: &[u8] = br#"{"invoice":42,"total":"80.00","status":"draft"}"#;
const NEW: &[u8] = br#"{"invoice":42,"total":"99.50","status":"sent","lines":3}"#;

/// Time for work the store may have shielded in a task of its own to finish before the state is
/// judged; the fake disk needs a few milliseconds per step.
const LET_SHIELDED_WORK_FINISH: Duration = Duration::from_secs(1);

type State = (DocStore, FakeFs, Index);

fn empty_store() -> State {
    let (fs, index) = (FakeFs::new(), Index::new());
    (DocStore::new(fs.clone(), index.clone()), fs, index)
}

/// A store that already holds version `OLD` of the document, saved and indexed.
fn store_with_old_version() -> State {
    let path = DocStore::final_path(ID);
    let fs = FakeFs::preloaded([(path.as_str(), OLD)]);
    let index = Index::preloaded([(ID, path.as_str())]);
    (DocStore::new(fs.clone(), index.clone()), fs, index)
}

/// The invariants a reader relies on, checked after a (possibly cancelled) save.
fn check_consistent(
    fs: &FakeFs,
    index: &Index,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<(), String> {
    let path = DocStore::final_path(ID);
    let listed = index.contains(ID);
    let on_disk = fs.exists(&path);
    if listed && !on_disk {
        return Err(format!(
            "the index lists `{ID}` but {path} does not exist: every reader now gets \"document \
             missing\". Either the index entry was made before the file was in place and the \
             save was dropped in between, or the file was deleted after the entry was made (an \
             `Index::insert` dropped after its first poll has still inserted: cancelled does not \
             mean \"did not happen\")"
        ));
    }
    if on_disk && !listed {
        return Err(format!(
            "{path} exists but the index does not list `{ID}`: an orphan document nobody can \
             find. The file was put in place, and the index entry never followed (or was \
             removed)"
        ));
    }
    let leftovers: Vec<String> = fs.paths().into_iter().filter(|p| p.ends_with(".tmp")).collect();
    if !leftovers.is_empty() {
        return Err(format!(
            "{leftovers:?} left behind: the save was dropped after it created its temporary \
             file, and nothing deleted it. Over a day of timeouts the disk fills with them"
        ));
    }
    if let Some(content) = fs.read(&path) {
        let is_old = old.is_some_and(|old| content == old);
        if !is_old && content != new {
            return Err(format!(
                "{path} holds {} bytes that are neither the previous version nor the new one in \
                 full: {:?}",
                content.len(),
                String::from_utf8_lossy(&content)
            ));
        }
    }
    if old.is_some() && !listed {
        return Err(format!(
            "the previous version of `{ID}` is gone: a save that is dropped must leave the old \
             document in place"
        ));
    }
    Ok(())
}

hidden_test! {
    /// Nothing cancelled: once `save` returns, the document is indexed, readable and complete,
    /// and no temporary file is left.
    async fn save_then_load_returns_the_document() {
        let (store, fs, index) = empty_store();
        store.save(ID, NEW).await.expect("save failed");
        assert_eq!(
            store.load(ID).as_deref(),
            Some(NEW),
            "right after save() returns, load() must return the document: a save that returns \
             before the document is stored lies to its caller"
        );
        if let Err(seen) = check_consistent(&fs, &index, None, NEW) {
            panic!("with nothing cancelled, {seen}");
        }
    }

    /// A new document, with `save` dropped after every possible poll.
    async fn a_new_document_survives_a_drop_at_every_await() {
        assert_cancel_safe(
            empty_store,
            |(store, _, _): State| async move { store.save(ID, NEW).await },
            |(store, fs, index), outcome: Outcome<std::io::Result<()>>| async move {
                tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
                check_consistent(&fs, &index, None, NEW)?;
                if let Some(result) = outcome.completed() {
                    result.map_err(|e| format!("save failed: {e}"))?;
                    if store.load(ID).as_deref() != Some(NEW) {
                        return Err("save() returned Ok but load() does not return the document"
                            .to_owned());
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    /// Replacing an existing document, with `save` dropped after every possible poll: the old
    /// version must survive any drop before the commit, whole.
    async fn replacing_a_document_survives_a_drop_at_every_await() {
        assert_cancel_safe(
            store_with_old_version,
            |(store, _, _): State| async move { store.save(ID, NEW).await },
            |(store, fs, index), outcome: Outcome<std::io::Result<()>>| async move {
                tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
                check_consistent(&fs, &index, Some(OLD), NEW)?;
                if let Some(result) = outcome.completed() {
                    result.map_err(|e| format!("save failed: {e}"))?;
                    if store.load(ID).as_deref() != Some(NEW) {
                        return Err("save() returned Ok but load() returns the old version"
                            .to_owned());
                    }
                }
                Ok(())
            },
        )
        .await;
    }
}
