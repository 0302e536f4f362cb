//! Sign-in timing: a wrong password for a name that exists against a name that does not. The
//! desk checks an unknown name against a stand-in hash with the users' own cost, so the two
//! should take the same time (a ratio of 1.0): the answer's timing does not reveal names.

use crate::{median, Report};
use lantern_desk::auth::Auth;
use lantern_shared::config::UserConfig;
use lantern_shared::domain::Role;
use std::time::Instant;

pub(crate) fn signin(report: &mut Report) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"bench-salt-0123456").expect("salt");
    // The desk's real cost: argon2id with the library's defaults, as `lantern hash-password` makes.
    let hash = argon2::Argon2::default().hash_password(b"right-password", &salt).expect("hash").to_string();
    let users = vec![UserConfig { name: "nurse".into(), role: Role::Nurse, password_hash: hash, disabled: false }];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        // A fresh Auth per attempt, so the throttle never steps in.
        for _ in 0..15 {
            for (name, times) in [("nurse", &mut known), ("nobody", &mut unknown)] {
                let auth = Auth::default();
                let start = Instant::now();
                let refused = auth.verify(&users, name, "wrong-password", None, 0).await.is_err();
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                assert!(refused);
            }
        }
    });
    let (k, u) = (median(known), median(unknown));
    report.add(
        "sign-in: wrong password for a name that does not exist",
        u,
        "ms",
        &format!("{:.2} of the time for a name that exists", u / k),
    );
    report.add("baseline: wrong password for a name that exists", k, "ms", "argon2id, default cost");
}
