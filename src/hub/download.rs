//! A repository's file into the Hugging Face cache, laid out as `huggingface_hub` lays it out:
//! the bytes in `blobs/ETAG`, written first to `blobs/ETAG.incomplete` (resumed from its length
//! after a cut, checked against the LFS file's SHA-256, then renamed, so a partial file is never
//! used); the file as `snapshots/COMMIT/NAME`, a relative link to its blob; `refs/main` naming
//! the commit. One process at a time per blob (a lock under `.locks/`, as `huggingface_hub`
//! takes), and the disk's free space checked before a byte is fetched.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::BodyExt;
use hyper::StatusCode;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::{FileMeta, Hub};

/// The cache folder of a model repository (`models--OWNER--NAME`).
pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Puts `file` of `repo` at `commit` into `cache` (fetching what its blob lacks) and returns its
/// path in the snapshot. `bar` counts the bytes.
pub async fn into_cache(
    hub: &Hub,
    cache: &Path,
    repo: &str,
    commit: &str,
    file: &str,
    meta: &FileMeta,
    bar: &ProgressBar,
) -> Result<PathBuf> {
    let dir = repo_dir(cache, repo);
    let blobs = dir.join("blobs");
    let locks = cache.join(".locks").join(dir.file_name().unwrap_or_default());
    for d in [&blobs, &locks] {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let lock_path = locks.join(format!("{}.lock", meta.etag));
    let lock = File::create(&lock_path).with_context(|| format!("{}: cannot create", lock_path.display()))?;
    // Another strata (or huggingface_hub) fetching the same blob finishes first.
    lock.lock().with_context(|| format!("{}: cannot lock", lock_path.display()))?;
    let blob = blobs.join(&meta.etag);
    let done = std::fs::metadata(&blob).is_ok_and(|m| m.len() == meta.size);
    if done {
        bar.inc(meta.size);
    } else {
        fetch_blob(hub, repo, commit, file, meta, &blob, bar).await?;
    }
    let pointer = link(&dir, commit, file, &meta.etag);
    drop(lock);
    pointer
}

async fn fetch_blob(
    hub: &Hub,
    repo: &str,
    commit: &str,
    file: &str,
    meta: &FileMeta,
    blob: &Path,
    bar: &ProgressBar,
) -> Result<()> {
    let partial = blob.with_file_name(format!("{}.incomplete", meta.etag));
    let mut have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if have > meta.size {
        have = 0;
    }
    let free = free_bytes(blob.parent().unwrap_or(Path::new(".")))?;
    if free < meta.size - have {
        bail!(
            "{file}: {} more bytes to fetch, but the disk holding {} has {free} free",
            meta.size - have,
            blob.display()
        );
    }
    let response = hub.get(repo, commit, file, have).await?;
    if response.status() != StatusCode::PARTIAL_CONTENT {
        have = 0; // the server sends the whole file
    }
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(have == 0)
        .append(have > 0)
        .open(&partial)
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    // The hash of what is already there, then of each new byte.
    let mut hasher = Sha256::new();
    if have > 0 {
        let mut prefix = File::open(&partial)?.take(have);
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = prefix.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    bar.inc(have);
    let mut got = have;
    let mut body = response.into_body();
    let cut = |got: u64| {
        anyhow!(
            "{file}: the download stopped at byte {got} of {}; run strata pull again to resume from there",
            meta.size
        )
    };
    loop {
        let frame = match tokio::time::timeout(hub.stall, body.frame()).await {
            Err(_) => return Err(cut(got).context(format!("no bytes for {} s", hub.stall.as_secs_f64()))),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(cut(got)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(chunk) = frame.data_ref() {
            if got + chunk.len() as u64 > meta.size {
                bail!("{file}: the server sent more than the {} bytes the Hub announced", meta.size);
            }
            out.write_all(chunk).with_context(|| format!("{}: cannot write", partial.display()))?;
            hasher.update(chunk);
            got += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
    }
    out.sync_all()?;
    drop(out);
    if got < meta.size {
        return Err(cut(got));
    }
    if let Some(expected) = meta.sha256() {
        let sha = format!("{:x}", hasher.finalize());
        if sha != expected.to_ascii_lowercase() {
            let _ = std::fs::remove_file(&partial);
            bail!("{file}: its SHA-256 is {sha}, not the {expected} the Hub gives: the download was corrupted and is removed");
        }
    }
    std::fs::rename(&partial, blob)
        .with_context(|| format!("{}: cannot rename to {}", partial.display(), blob.display()))
}

/// `snapshots/COMMIT/FILE` as a relative link to `blobs/ETAG`, and `refs/main` naming the commit.
fn link(dir: &Path, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
    let pointer = dir.join("snapshots").join(commit).join(file);
    let parent = pointer.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let depth = 2 + file.matches('/').count();
    let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
    // Made beside it, then renamed over it: the file is always there, whole, or not yet.
    let temp = parent.join(format!(".{etag}.{}.link", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(&target, &temp).with_context(|| format!("{}: cannot link", temp.display()))?;
    std::fs::rename(&temp, &pointer).with_context(|| format!("{}: cannot link", pointer.display()))?;
    // Written whole, then renamed: a reader never sees half a commit.
    let refs = dir.join("refs");
    std::fs::create_dir_all(&refs)?;
    let temp = refs.join(format!(".main.{}", std::process::id()));
    std::fs::write(&temp, commit).with_context(|| format!("{}: cannot write", temp.display()))?;
    std::fs::rename(&temp, refs.join("main")).with_context(|| format!("{}: cannot write", refs.display()))?;
    Ok(pointer)
}

/// Bytes free to an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a valid statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        bail!("{}: cannot read the free space ({})", dir.display(), std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}
