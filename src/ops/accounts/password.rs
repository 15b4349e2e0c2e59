//! Password hashing with argon2id, on threads of its own: at most one hash per core runs at
//! once, always on the same few threads, each in a block of memory it keeps and reuses (never
//! allocated per hash, so a flood neither multiplies it nor leaves it behind in the
//! allocator), and a caller that cannot get a turn within a moment is told the server is busy.
//!
//! The parameters are one of OWASP's equally strong argon2id settings: 7 MiB and 5 passes
//! (rather than 19 MiB and 2: the same work, less memory held per hash, so a master under a
//! flood stays small). Hashes made with other parameters (the 19 MiB ones of earlier
//! versions) still verify, and are made again with these at the next log-in.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::cell::RefCell;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// OWASP's argon2id (m=7168, t=5, p=1); a 16-byte salt and a 32-byte hash.
const M_KIB: u32 = 7 * 1024;
const T: u32 = 5;
const P: u32 = 1;
const SALT_LEN: usize = 16;
const OUT_LEN: usize = 32;

thread_local! {
    /// This hashing thread's argon2 memory, kept from one hash to the next.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs an argon2 computation in this thread's memory, grown to `blocks` if it is smaller;
/// more than our own parameters need (an older hash's) is given back afterwards.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < blocks {
            m.resize(blocks, Block::default());
        }
        let out = f(&mut m[..blocks]);
        let ours = M_KIB as usize; // one block per KiB
        if m.len() > ours {
            m.truncate(ours);
            m.shrink_to_fit();
        }
        out
    })
}

/// Whether a stored hash was made with other parameters than ours (made again at the next
/// log-in, when the password is at hand).
pub fn needs_rehash(phc: &str) -> bool {
    !phc.starts_with(&format!("$argon2id$v=19$m={M_KIB},t={T},p={P}$"))
}

/// The PHC string's base64: the standard alphabet, no padding.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A new PHC string for `password`, computed in this thread's memory.
fn hash_here(password: &[u8]) -> anyhow::Result<String> {
    let params = Params::new(M_KIB, T, P, Some(OUT_LEN))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut out = [0u8; OUT_LEN];
    with_memory(params.block_count(), |m| {
        argon.hash_password_into_with_memory(password, &salt, &mut out, m)
    })
    .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(format!(
        "$argon2id$v=19$m={M_KIB},t={T},p={P}${}${}",
        b64(&salt),
        b64(&out)
    ))
}

/// Whether `password` gives the hash in `phc` (any argon2 variant and parameters it names),
/// computed in this thread's memory and compared in constant time.
fn verify_here(phc: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    let computed = with_memory(params.block_count(), |m| {
        argon.hash_password_into_with_memory(password, salt, &mut out, m)
    });
    computed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// No turn to check a password came within [`WAIT`]: the server is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The server is checking too many passwords right now. Try again in a few seconds.")]
pub struct Busy;

impl From<Busy> for crate::error::Error {
    fn from(e: Busy) -> Self {
        crate::error::Error::Busy(e.to_string())
    }
}

/// How long a caller waits for a turn before it is told the server is busy.
pub const WAIT: Duration = Duration::from_secs(3);

type Task = Box<dyn FnOnce() + Send>;

/// The hashing threads (one per core), the short line of work waiting for them (as long
/// again), and the gate that admits at most that many: the rest wait at the gate, asleep.
struct Line {
    tasks: SyncSender<Task>,
    admitted: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// A place in the line, given back when dropped.
struct Admitted(&'static Line);

impl Drop for Admitted {
    fn drop(&mut self) {
        *self.0.admitted.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

impl Line {
    fn enter(&'static self, deadline: Instant) -> Result<Admitted, Busy> {
        let mut n = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Busy);
            }
            n = self
                .freed
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *n += 1;
        Ok(Admitted(self))
    }
}

fn line() -> &'static Line {
    static LINE: OnceLock<Line> = OnceLock::new();
    LINE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = mpsc::sync_channel::<Task>(2 * cores);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cores {
            let rx: Arc<Mutex<Receiver<Task>>> = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let task = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match task {
                        Ok(task) => task(),
                        Err(_) => return,
                    }
                })
                .expect("a password hashing thread");
        }
        Line {
            tasks: tx,
            admitted: Mutex::new(0),
            freed: Condvar::new(),
            max: 2 * cores,
        }
    })
}

/// Runs `f` on a hashing thread and waits for it; `Busy` if no turn came within [`WAIT`].
fn on_hashing_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    let line = line();
    let _place = line.enter(Instant::now() + WAIT)?;
    let (reply, answer) = mpsc::channel();
    // Never more admitted than the line holds: this does not wait.
    line.tasks
        .send(Box::new(move || {
            let _ = reply.send(f());
        }))
        .map_err(|_| Busy)?;
    answer.recv().map_err(|_| Busy)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=7168,t=5,p=1$...`).
pub fn hash(password: &str) -> crate::error::Result<String> {
    let password = password.to_string();
    let hashed = on_hashing_thread(move || hash_here(password.as_bytes()))?;
    Ok(hashed?)
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify(phc: &str, password: &str) -> Result<bool, Busy> {
    let (phc, password) = (phc.to_string(), password.to_string());
    on_hashing_thread(move || verify_here(&phc, password.as_bytes()))
}

/// Spends the same time as a real check, for log-ins to accounts that do not exist, so the
/// answer's timing does not tell which usernames exist.
pub fn verify_dummy(password: &str) -> Result<(), Busy> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = match DUMMY.get() {
        Some(p) => p,
        None => {
            let made = hash("dummy password for timing").map_err(|_| Busy)?;
            DUMMY.get_or_init(|| made)
        }
    };
    verify(phc, password).map(|_| ())
}

#[cfg(test)]
mod tests {
    /// What is written here and what the argon2 crate writes are the same thing: each
    /// verifies the other's hashes.
    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        let ours = super::hash("correct horse battery").unwrap();
        let parsed = argon2::password_hash::PasswordHash::new(&ours).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"correct horse batterY", &parsed)
            .is_err());
        let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
        let theirs =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(
                    b"correct horse battery",
                    &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
                )
                .unwrap()
                .to_string();
        assert_eq!(super::verify(&theirs, "correct horse battery"), Ok(true));
        assert!(
            super::needs_rehash(&theirs),
            "the older 19 MiB kind is made again"
        );
        assert_eq!(super::verify(&theirs, "correct horse batteries"), Ok(false));
        // A hash of the older, lighter kind still verifies (its own parameters are used).
        let light = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(
            b"pw",
            &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
        )
        .unwrap()
        .to_string();
        assert_eq!(super::verify(&light, "pw"), Ok(true));
    }

    #[test]
    fn round_trip() {
        let h = super::hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(!super::needs_rehash(&h));
        assert_eq!(super::verify(&h, "correct horse battery"), Ok(true));
        assert_eq!(super::verify(&h, "correct horse batterY"), Ok(false));
        assert_eq!(super::verify("not a hash", "x"), Ok(false));
    }

    #[test]
    fn a_flood_waits_its_turn_or_is_told_busy() {
        let threads: Vec<_> = (0..24)
            .map(|_| std::thread::spawn(|| super::hash("flood flood flood")))
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let done = results.iter().filter(|r| r.is_ok()).count();
        assert!(done >= 2, "some were hashed: {done}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(r.to_string().contains("Try again"), "{r}");
        }
    }
}
