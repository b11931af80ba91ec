//! SPNEGO (`Authorization: Negotiate`, RFC 4559) for a ResourceManager whose web APIs are
//! secured with Kerberos (`hadoop.http.authentication.type=kerberos`), through MIT's GSSAPI
//! (`libgssapi_krb5`, via the `libgssapi` crate).
//!
//! The credentials are the process's: with `--keytab/--principal` the CLI re-executes itself
//! with `KRB5_CLIENT_KTNAME` (the keytab) and a private in-memory ticket cache, so GSSAPI logs
//! in from the keytab and logs in again when the ticket expires; without them, the ticket cache
//! of `kinit` (`KRB5CCNAME`).

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};

/// The first (and, for Kerberos, only) SPNEGO token for the HTTP service on `host`, as the
/// process's principal (`principal`, or the ticket cache's). Blocking: it may ask the KDC for
/// a ticket.
pub fn initial_token(host: &str, principal: Option<&str>) -> Result<Vec<u8>, String> {
    let cred = principal
        .map(|p| {
            let name = Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
                .map_err(|e| format!("principal {p}: {e}"))?;
            Cred::acquire(Some(&name), None, CredUsage::Initiate, None)
                .map_err(|e| format!("no credentials for {p}: {e}"))
        })
        .transpose()?;
    // HTTP@host: GSSAPI maps it to the principal HTTP/host@REALM, the RM's SPNEGO principal.
    let target = Name::new(
        format!("HTTP@{host}").as_bytes(),
        Some(GSS_NT_HOSTBASED_SERVICE),
    )
    .map_err(|e| format!("service name HTTP@{host}: {e}"))?;
    let mut ctx = ClientCtx::new(
        cred,
        target,
        CtxFlags::GSS_C_MUTUAL_FLAG,
        Some(GSS_MECH_SPNEGO),
    );
    match ctx.step(None, None) {
        Ok(Some(token)) => Ok(token.to_vec()),
        Ok(None) => Err("GSSAPI produced no token".into()),
        Err(e) => Err(format!("for HTTP/{host}: {e}")),
    }
}
