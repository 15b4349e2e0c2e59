//! Log-in through the college directory: a real OpenLDAP `slapd` from Debian, configured here
//! in a temporary folder on a free port, with a test CA, users and groups, and TLS required of
//! every client (so each log-in below went over StartTLS).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use slices::config::Config;
use slices::context::Context;
use slices::error::Error;
use slices::ops::accounts::{self, AuthSource, Origin};

const SUFFIX: &str = "dc=example,dc=edu";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=edu";
const ADMIN_PW: &str = "admin-secret";

/// A slapd this test started; stopped when dropped.
struct Slapd {
    child: Child,
    url: String,
    ca: PathBuf,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Slices test directory CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca, crt, k) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca, crt, k)
}

const PEOPLE: &[(&str, &str, &str, &str)] = &[
    // uid, cn, mail, password
    (
        "ada",
        "Ada Lovelace",
        "ada@ccs.example.edu",
        "ada-pass-1815",
    ),
    (
        "grace",
        "Grace Hopper",
        "grace@ccs.example.edu",
        "grace-pass-1906",
    ),
    (
        "alan",
        "Alan Turing",
        "alan@ccs.example.edu",
        "alan-pass-1912",
    ),
    (
        "edsger",
        "Edsger Dijkstra",
        "edsger@ccs.example.edu",
        "edsger-pass-1930",
    ),
    // A directory entry whose uid is a name reserved here.
    (
        "root",
        "Not A Person",
        "root@ccs.example.edu",
        "root-pass-0000",
    ),
];

fn start_slapd(dir: &Path) -> Slapd {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, crt, key) = test_ca(dir);
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let conf = dir.join("slapd.conf");
    std::fs::write(
        &conf,
        format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {crt}
TLSCertificateKeyFile {key}
# Every operation needs TLS: a client that did not StartTLS gets nothing.
security tls=1
database mdb
maxsize 10485760
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PW}
directory {db}
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by * none
",
            dir = dir.display(),
            ca = ca.display(),
            crt = crt.display(),
            key = key.display(),
            db = db.display(),
        ),
    )
    .unwrap();
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example College\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=courses,ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: courses\n\n\
         dn: cn=svc-slices,{SUFFIX}\nobjectClass: person\ncn: svc-slices\nsn: service\nuserPassword: svc-pass\n\n"
    );
    for (uid, cn, mail, pw) in PEOPLE {
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn}\nmail: {mail}\nuserPassword: {pw}\n\n"
        ));
    }
    let member = |uid: &str| format!("member: uid={uid},ou=people,{SUFFIX}\n");
    ldif.push_str(&format!(
        "dn: cn=lab-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: lab-admins\n{}\n",
        member("grace")
    ));
    ldif.push_str(&format!(
        "dn: cn=lab-staff,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: lab-staff\n{}{}\n",
        member("alan"),
        member("grace")
    ));
    ldif.push_str(&format!(
        "dn: cn=CS3650,ou=courses,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: CS3650\n{}{}\n",
        member("ada"),
        member("edsger")
    ));
    ldif.push_str(&format!(
        "dn: cn=CS9999,ou=courses,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: CS9999\n{}\n",
        member("ada")
    ));
    let data = dir.join("data.ldif");
    std::fs::write(&data, ldif).unwrap();
    let out = Command::new("slapadd")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&data)
        .output()
        .expect("slapadd (Debian's slapd) is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "slapadd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::gateway_lab::free_port();
    let url = format!("ldap://127.0.0.1:{port}");
    let child = Command::new("slapd")
        .args(["-d", "0", "-h", &format!("{url}/"), "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slapd");
    let began = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(began.elapsed().as_secs() < 20, "slapd did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Slapd { child, url, ca }
}

fn context(data: &Path, slapd: &Slapd, extra: &[(&str, &str)]) -> std::sync::Arc<Context> {
    let mut flags: Vec<(&str, String)> = vec![
        ("data", data.display().to_string()),
        ("ldap_url", slapd.url.clone()),
        ("ldap_ca_file", slapd.ca.display().to_string()),
        ("ldap_bind_dn", format!("cn=svc-slices,{SUFFIX}")),
        ("ldap_bind_password", "svc-pass".into()),
        ("ldap_user_base", format!("ou=people,{SUFFIX}")),
        (
            "ldap_user_filter",
            "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))".into(),
        ),
        ("ldap_group_base", format!("ou=groups,{SUFFIX}")),
        (
            "ldap_admin_groups",
            format!("cn=lab-admins,ou=groups,{SUFFIX}"),
        ),
        (
            "ldap_staff_groups",
            format!("cn=Lab-Staff, ou=groups,{SUFFIX}"),
        ),
        (
            "ldap_course_groups",
            format!("ou=courses,ou=groups,{SUFFIX}"),
        ),
    ];
    flags.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Context::open(Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()).unwrap()
}

fn log_in(
    ctx: &Context,
    login: &str,
    password: &str,
) -> slices::error::Result<(accounts::User, String)> {
    let origin = Origin {
        ip: "192.0.2.7".into(),
        user_agent: "test".into(),
    };
    accounts::login(
        &ctx.db,
        &ctx.policy,
        ctx.directory.as_ref(),
        login,
        password,
        &origin,
    )
}

/// The one value `sql` reads for a user's id.
fn value_for<T: rusqlite::types::FromSql>(ctx: &Context, sql: &str, user_id: i64) -> T {
    ctx.db
        .read(|c| Ok::<_, Error>(c.query_row(sql, [user_id], |r| r.get(0))?))
        .unwrap()
}

fn audit_details(ctx: &Context, event: &str) -> Vec<String> {
    ctx.db
        .read(|c| {
            let mut s = c.prepare(
                "SELECT subject || ': ' || detail FROM audit WHERE event = ?1 ORDER BY id",
            )?;
            let rows = s
                .query_map([event], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, Error>(rows)
        })
        .unwrap()
}

/// Sets (or clears) a person's `employeeType: disabled` as the directory's admin would.
fn mark_disabled(slapd: &Slapd, uid: &str, disabled: bool) {
    use ldap3::{LdapConn, LdapConnSettings, Mod};
    let pem = std::fs::read(&slapd.ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let settings = LdapConnSettings::new()
        .set_starttls(true)
        .set_config(std::sync::Arc::new(tls));
    let mut conn = LdapConn::with_settings(settings, &slapd.url).unwrap();
    conn.simple_bind(ADMIN_DN, ADMIN_PW)
        .unwrap()
        .success()
        .unwrap();
    let dn = format!("uid={uid},ou=people,{SUFFIX}");
    let m = if disabled {
        Mod::Replace(
            "employeeType",
            std::collections::HashSet::from(["disabled"]),
        )
    } else {
        Mod::Delete("employeeType", std::collections::HashSet::new())
    };
    conn.modify(&dn, vec![m]).unwrap().success().unwrap();
    let _ = conn.unbind();
}

#[test]
fn people_log_in_through_the_college_directory() {
    if !crate::system::enabled("people_log_in_through_the_college_directory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let slapd = start_slapd(&dir.path().join("ldap"));
    let ctx = context(&dir.path().join("data"), &slapd, &[]);
    // A course that exists here (CS9999 does not: its group is left alone).
    ctx.db
        .write(|tx| {
            tx.execute(
                "INSERT INTO courses (code, title, ends_at, created_at, updated_at) VALUES ('CS3650', 'Systems', 4102444800, 0, 0)",
                [],
            )?;
            Ok::<_, Error>(())
        })
        .unwrap();

    // First log-in: the account is made from the entry, address confirmed, courses from groups.
    let (ada, token) = log_in(&ctx, "ada", "ada-pass-1815").expect("ada logs in");
    assert!(!token.is_empty());
    assert_eq!(ada.username, "ada");
    assert_eq!(ada.display_name, "Ada Lovelace");
    assert_eq!(ada.email, "ada@ccs.example.edu");
    assert_eq!(ada.role.as_str(), "student");
    assert_eq!(ada.source, AuthSource::Ldap);
    assert!(
        ada.email_verified_at.is_some(),
        "the directory vouches for the address"
    );
    let courses = ctx
        .db
        .read(|c| slices::records::courses::member_of(c, ada.id))
        .unwrap();
    assert_eq!(courses, vec!["CS3650".to_string()]);
    // No password is kept here for her.
    let hash: String = value_for(
        &ctx,
        "SELECT password_hash FROM users WHERE id = ?1",
        ada.id,
    );
    assert_eq!(hash, "");
    // Again, by username and by address.
    log_in(&ctx, "ada", "ada-pass-1815").expect("again");
    log_in(&ctx, "ada@ccs.example.edu", "ada-pass-1815").expect("by address");

    // Roles from groups (group DNs compared without case or spaces).
    let (grace, _) = log_in(&ctx, "grace", "grace-pass-1906").unwrap();
    assert_eq!(grace.role.as_str(), "admin");
    let (alan, _) = log_in(&ctx, "alan", "alan-pass-1912").unwrap();
    assert_eq!(alan.role.as_str(), "staff");

    // A wrong password, an empty one (an anonymous bind to LDAP), a name nobody has.
    for (login, pw) in [("ada", "wrong"), ("ada", ""), ("nobody", "whatever-1")] {
        match log_in(&ctx, login, pw) {
            Err(Error::Invalid(_)) => {}
            other => panic!("{login}/{pw:?}: {other:?}"),
        }
    }
    // Filter characters never reach the directory: refused like a wrong password.
    for login in [
        "*",
        "ada)(uid=*",
        "*)(|(uid=*",
        "ada*",
        "grace\\2a",
        "(uid=ada)",
    ] {
        match log_in(&ctx, login, "ada-pass-1815") {
            Err(Error::Invalid(_)) | Err(Error::Throttled(_)) => {}
            other => panic!("{login}: {other:?}"),
        }
    }
    // An entry whose username is reserved here is refused with why.
    match log_in(&ctx, "root", "root-pass-0000") {
        Err(Error::Forbidden(m)) => assert!(m.contains("username"), "{m}"),
        other => panic!("a reserved name: {other:?}"),
    }

    // A local account in the way is never taken over: the person is told, staff see it.
    slices::ops::accounts::create_account(
        &ctx.db,
        &ctx.policy,
        accounts::SignUpForm {
            username: "edsger".into(),
            email: "edsger@elsewhere.example.org".into(),
            display_name: "Someone Else".into(),
            password: "a local password 1".into(),
            password_confirm: "a local password 1".into(),
        }
        .check()
        .unwrap(),
        accounts::Grant {
            role: slices::domain::Role::Student,
            event: accounts::Event::AccountCreated,
            creator: None,
            origin: None,
            invite: None,
        },
    )
    .unwrap();
    match log_in(&ctx, "edsger", "edsger-pass-1930") {
        Err(Error::Forbidden(m)) => assert!(m.contains("not linked"), "{m}"),
        other => panic!("clash: {other:?}"),
    }
    assert_eq!(audit_details(&ctx, "directory_clash").len(), 1);
    // Its own password still works for it, and it stays local.
    let (local, _) = log_in(&ctx, "edsger", "a local password 1").unwrap();
    assert_eq!(local.source, AuthSource::Local);
    assert_eq!(local.email, "edsger@elsewhere.example.org");
    // Staff decide to link it (`slices user link edsger`): from then on the directory's
    // password, name and address; the local password no longer opens it.
    // (A student may not; an admin, or the shell, may.)
    assert!(matches!(
        accounts::link_to_directory(
            &ctx.db,
            "edsger",
            accounts::AuthSource::Ldap,
            Some(&ada),
            ""
        ),
        Err(Error::Forbidden(_))
    ));
    let linked = accounts::link_to_directory(
        &ctx.db,
        "edsger",
        accounts::AuthSource::Ldap,
        Some(&grace),
        "",
    )
    .unwrap();
    assert_eq!(linked.source, AuthSource::Ldap);
    assert_eq!(audit_details(&ctx, "account_linked").len(), 1);
    assert!(matches!(
        log_in(&ctx, "edsger", "a local password 1"),
        Err(Error::Invalid(_))
    ));
    let (edsger, _) = log_in(&ctx, "edsger", "edsger-pass-1930").expect("linked");
    assert_eq!(
        edsger.id, local.id,
        "the same account, its slices and keys kept"
    );
    assert_eq!(edsger.email, "edsger@ccs.example.edu");
    assert_eq!(edsger.display_name, "Edsger Dijkstra");
    // No password can be set here for a directory account: no reset link is made.
    accounts::request_reset(&ctx.db, "ada", "192.0.2.7").unwrap();
    let links: i64 = value_for(
        &ctx,
        "SELECT count(*) FROM email_tokens WHERE user_id = ?1",
        ada.id,
    );
    assert_eq!(links, 0);

    // Disabled in the directory: refused at the next log-in ...
    mark_disabled(&slapd, "alan", true);
    assert!(log_in(&ctx, "alan", "alan-pass-1912").is_err());
    // ... and the periodic check disables ada's account here and ends her sessions.
    mark_disabled(&slapd, "ada", true);
    let checked =
        accounts::check_directory_accounts(&ctx.db, ctx.directory.as_ref().unwrap()).unwrap();
    assert_eq!(checked.looked_up, 4, "ada, grace, alan, edsger");
    assert_eq!(
        checked.disabled,
        vec!["ada".to_string(), "alan".to_string()]
    );
    let sessions: i64 = value_for(
        &ctx,
        "SELECT count(*) FROM sessions WHERE user_id = ?1",
        ada.id,
    );
    assert_eq!(sessions, 0, "her sessions ended");
    // Back in the directory: her next log-in enables the account again.
    mark_disabled(&slapd, "ada", false);
    let (ada, _) = log_in(&ctx, "ada", "ada-pass-1815").expect("ada is back");
    assert!(!ada.is_disabled());

    // The directory takes nothing from a client that skipped StartTLS (so every log-in above
    // went over TLS): without it, the log-in fails as a directory that does not answer.
    let clear = context(
        &dir.path().join("clear"),
        &slapd,
        &[("ldap_starttls", "false")],
    );
    match log_in(&clear, "grace", "grace-pass-1906") {
        Err(Error::Throttled(m)) => assert!(m.contains("does not answer"), "{m}"),
        other => panic!("without TLS: {other:?}"),
    }

    // A directory that does not answer: said plainly.
    drop(slapd);
    match log_in(&ctx, "grace", "grace-pass-1906") {
        Err(Error::Throttled(m)) => assert!(m.contains("does not answer"), "{m}"),
        other => panic!("directory down: {other:?}"),
    }
}
