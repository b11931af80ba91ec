//! SPNEGO (`Authorization: Negotiate`, RFC 4559) for a ResourceManager whose web APIs are
//! secured with Kerberos (`hadoop.http.authentication.type=kerberos`), through MIT's GSSAPI.
//!
//! `libgssapi_krb5` is loaded at run time (`dlopen`), and only when a ResourceManager answers
//! 401 Negotiate: linking it (or generating bindings at build time) would make every build of
//! Spindle need the Kerberos development headers and libclang, for a feature most deployments
//! never use. The few calls needed are declared here by hand from RFC 2744's C bindings, as
//! MIT's `gssapi.h` spells them.
//!
//! The credentials are the process's: with `--keytab/--principal` the CLI re-executes itself
//! with `KRB5_CLIENT_KTNAME` (the keytab) and a private in-memory ticket cache, so GSSAPI logs
//! in from the keytab and logs in again when the ticket expires; without them, the ticket cache
//! of `kinit` (`KRB5CCNAME`).

// Calling a C library loaded at run time cannot be done without `unsafe`; the crate denies
// it everywhere else (see its Cargo.toml), and every block below says why it is sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;
use std::sync::OnceLock;

/// The library's names: Debian/Ubuntu ship only the versioned one without `libkrb5-dev`.
const LIBRARY_NAMES: [&str; 2] = ["libgssapi_krb5.so.2", "libgssapi_krb5.so"];

/// The Debian/Ubuntu package that installs the library.
const LIBRARY_PACKAGE: &str = "libgssapi-krb5-2";

/// `OM_uint32`.
type OmUint32 = u32;
/// `gss_name_t`, `gss_cred_id_t`, `gss_ctx_id_t`: opaque pointers.
type Handle = *mut c_void;

/// `gss_buffer_desc`.
#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    const EMPTY: Buffer = Buffer {
        length: 0,
        value: ptr::null_mut(),
    };
}

/// `gss_OID_desc`: the DER body of an object identifier (no tag, no length).
#[repr(C)]
struct Oid {
    length: OmUint32,
    elements: *const u8,
}

/// The SPNEGO mechanism, 1.3.6.1.5.5.2.
const SPNEGO_MECH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// `GSS_C_NT_HOSTBASED_SERVICE`, 1.2.840.113554.1.2.1.4: names such as `HTTP@host`.
const NT_HOSTBASED_SERVICE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x01, 0x04];
/// `GSS_KRB5_NT_PRINCIPAL_NAME`, 1.2.840.113554.1.2.2.1: names such as `user@REALM`.
const NT_KRB5_PRINCIPAL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];

const GSS_C_MUTUAL_FLAG: OmUint32 = 2;
const GSS_C_INITIATE: i32 = 1;
const GSS_C_INDEFINITE: OmUint32 = 0xffff_ffff;
const GSS_C_GSS_CODE: i32 = 1;
const GSS_C_MECH_CODE: i32 = 2;
/// `GSS_ERROR()`: the calling and routine error fields; the low bits are informational.
const GSS_ERROR_MASK: OmUint32 = 0xffff_0000;

type ImportName =
    unsafe extern "C" fn(*mut OmUint32, *const Buffer, *const Oid, *mut Handle) -> OmUint32;
type ReleaseName = unsafe extern "C" fn(*mut OmUint32, *mut Handle) -> OmUint32;
type AcquireCred = unsafe extern "C" fn(
    *mut OmUint32,
    Handle,
    OmUint32,
    *const c_void,
    i32,
    *mut Handle,
    *mut c_void,
    *mut OmUint32,
) -> OmUint32;
type ReleaseCred = unsafe extern "C" fn(*mut OmUint32, *mut Handle) -> OmUint32;
type InitSecContext = unsafe extern "C" fn(
    *mut OmUint32,
    Handle,
    *mut Handle,
    Handle,
    *const Oid,
    OmUint32,
    OmUint32,
    *const c_void,
    *const Buffer,
    *mut *const Oid,
    *mut Buffer,
    *mut OmUint32,
    *mut OmUint32,
) -> OmUint32;
type DeleteSecContext = unsafe extern "C" fn(*mut OmUint32, *mut Handle, *mut Buffer) -> OmUint32;
type ReleaseBuffer = unsafe extern "C" fn(*mut OmUint32, *mut Buffer) -> OmUint32;
type DisplayStatus = unsafe extern "C" fn(
    *mut OmUint32,
    OmUint32,
    i32,
    *const Oid,
    *mut OmUint32,
    *mut Buffer,
) -> OmUint32;

/// The entry points used, resolved once from the loaded library.
struct Gss {
    import_name: ImportName,
    release_name: ReleaseName,
    acquire_cred: AcquireCred,
    release_cred: ReleaseCred,
    init_sec_context: InitSecContext,
    delete_sec_context: DeleteSecContext,
    release_buffer: ReleaseBuffer,
    display_status: DisplayStatus,
    /// Keeps the functions above mapped; the value lives in a static and is never dropped.
    _library: libloading::Library,
}

/// The library, loaded on first use; a failure is remembered (it will not appear later).
fn gss() -> Result<&'static Gss, String> {
    static GSS: OnceLock<Result<Gss, String>> = OnceLock::new();
    GSS.get_or_init(|| load(&LIBRARY_NAMES))
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads the first of `names` that loads, and resolves the entry points.
fn load(names: &[&str]) -> Result<Gss, String> {
    let mut failures = Vec::new();
    let library = names
        .iter()
        .find_map(|name| {
            // SAFETY: MIT's libgssapi_krb5 has no load-time side effects beyond its own
            // initialisers (it registers its mechanisms); loading it cannot break this process.
            match unsafe { libloading::Library::new(*name) } {
                Ok(library) => Some(library),
                Err(e) => {
                    failures.push(e.to_string());
                    None
                }
            }
        })
        .ok_or_else(|| {
            format!(
                "MIT Kerberos' GSSAPI library ({}) could not be loaded ({}); install it (Debian/Ubuntu: apt-get install {LIBRARY_PACKAGE})",
                names.join(" or "),
                failures.join("; ")
            )
        })?;
    macro_rules! symbol {
        ($name:literal) => {
            // SAFETY: the type given is RFC 2744's C signature of this function, which MIT's
            // library exports under the same name; the pointer stays valid while `library`
            // is loaded, which is for the life of the process (see `Gss::_library`).
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("MIT Kerberos' GSSAPI library has no {}: {e}", $name))?
        };
    }
    Ok(Gss {
        import_name: symbol!("gss_import_name"),
        release_name: symbol!("gss_release_name"),
        acquire_cred: symbol!("gss_acquire_cred"),
        release_cred: symbol!("gss_release_cred"),
        init_sec_context: symbol!("gss_init_sec_context"),
        delete_sec_context: symbol!("gss_delete_sec_context"),
        release_buffer: symbol!("gss_release_buffer"),
        display_status: symbol!("gss_display_status"),
        _library: library,
    })
}

fn oid(body: &'static [u8]) -> Oid {
    Oid {
        length: body.len() as OmUint32,
        elements: body.as_ptr(),
    }
}

impl Gss {
    /// GSSAPI's own words for a failed call: the major status's, then the mechanism's.
    fn error(&self, major: OmUint32, minor: OmUint32) -> String {
        let mut parts = self.status_messages(major, GSS_C_GSS_CODE);
        if minor != 0 {
            parts.extend(self.status_messages(minor, GSS_C_MECH_CODE));
        }
        if parts.is_empty() {
            format!("GSSAPI major status {major:#x}, minor {minor}")
        } else {
            parts.join(": ")
        }
    }

    fn status_messages(&self, status: OmUint32, kind: i32) -> Vec<String> {
        let mut messages = Vec::new();
        let mut context: OmUint32 = 0;
        // A status may take several messages; the context says whether more follow. Bounded
        // in case a library never clears it.
        for _ in 0..8 {
            let mut minor = 0;
            let mut text = Buffer::EMPTY;
            // SAFETY: every pointer is to a live local; a null mechanism means the default.
            let major = unsafe {
                (self.display_status)(
                    &mut minor,
                    status,
                    kind,
                    ptr::null(),
                    &mut context,
                    &mut text,
                )
            };
            if major & GSS_ERROR_MASK != 0 {
                break;
            }
            messages.push(
                String::from_utf8_lossy(&self.take(&mut text))
                    .trim()
                    .to_string(),
            );
            if context == 0 {
                break;
            }
        }
        messages
    }

    /// Copies a buffer GSSAPI allocated and hands it back to GSSAPI.
    fn take(&self, buffer: &mut Buffer) -> Vec<u8> {
        let bytes = if buffer.value.is_null() || buffer.length == 0 {
            Vec::new()
        } else {
            // SAFETY: GSSAPI returned `length` initialised bytes at `value`, which stay
            // allocated until the release below.
            unsafe { std::slice::from_raw_parts(buffer.value.cast::<u8>(), buffer.length) }.to_vec()
        };
        let mut minor = 0;
        // SAFETY: `buffer` was filled by GSSAPI (or is empty, which release accepts).
        unsafe { (self.release_buffer)(&mut minor, buffer) };
        bytes
    }

    fn import_name(&self, text: &str, kind: &'static [u8]) -> Result<Name<'_>, String> {
        let input = Buffer {
            length: text.len(),
            value: text.as_ptr().cast_mut().cast(),
        };
        let kind = oid(kind);
        let mut minor = 0;
        let mut handle: Handle = ptr::null_mut();
        // SAFETY: `input` points at `text`, which GSSAPI only reads (and copies) during the
        // call; `kind` and the out-pointers are live locals.
        let major = unsafe { (self.import_name)(&mut minor, &input, &kind, &mut handle) };
        if major & GSS_ERROR_MASK != 0 {
            return Err(self.error(major, minor));
        }
        Ok(Name { gss: self, handle })
    }
}

/// An imported `gss_name_t`, released on drop.
struct Name<'a> {
    gss: &'a Gss,
    handle: Handle,
}

impl Drop for Name<'_> {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: the handle came from gss_import_name and is released only here.
        unsafe { (self.gss.release_name)(&mut minor, &mut self.handle) };
    }
}

/// A `gss_cred_id_t` (null: the default credentials), released on drop.
struct Cred<'a> {
    gss: &'a Gss,
    handle: Handle,
}

impl Drop for Cred<'_> {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            let mut minor = 0;
            // SAFETY: the handle came from gss_acquire_cred and is released only here.
            unsafe { (self.gss.release_cred)(&mut minor, &mut self.handle) };
        }
    }
}

/// A `gss_ctx_id_t`, deleted on drop (only the first token is wanted).
struct Context<'a> {
    gss: &'a Gss,
    handle: Handle,
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            let mut minor = 0;
            // SAFETY: the handle came from gss_init_sec_context and is deleted only here; a
            // null output token asks for no context-deletion token.
            unsafe { (self.gss.delete_sec_context)(&mut minor, &mut self.handle, ptr::null_mut()) };
        }
    }
}

/// Credentials for `principal` (from `KRB5_CLIENT_KTNAME`'s keytab or the ticket cache).
fn acquire<'a>(gss: &'a Gss, principal: &str) -> Result<Cred<'a>, String> {
    let name = gss
        .import_name(principal, NT_KRB5_PRINCIPAL)
        .map_err(|e| format!("principal {principal}: {e}"))?;
    let mut minor = 0;
    let mut cred = Cred {
        gss,
        handle: ptr::null_mut(),
    };
    // SAFETY: `name` is a live imported name; null mechanism set, actual mechanisms and time
    // ask for the defaults and no outputs; `cred.handle` is a live out-pointer.
    let major = unsafe {
        (gss.acquire_cred)(
            &mut minor,
            name.handle,
            GSS_C_INDEFINITE,
            ptr::null(),
            GSS_C_INITIATE,
            &mut cred.handle,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if major & GSS_ERROR_MASK != 0 {
        return Err(format!(
            "no credentials for {principal}: {}",
            gss.error(major, minor)
        ));
    }
    Ok(cred)
}

/// The first (and, for Kerberos, only) SPNEGO token for the HTTP service on `host`, as the
/// process's principal (`principal`, or the ticket cache's). Blocking: it may ask the KDC for
/// a ticket.
pub fn initial_token(host: &str, principal: Option<&str>) -> Result<Vec<u8>, String> {
    let gss = gss()?;
    let cred = match principal {
        Some(p) => acquire(gss, p)?,
        None => Cred {
            gss,
            handle: ptr::null_mut(),
        },
    };
    // HTTP@host: GSSAPI maps it to the principal HTTP/host@REALM, the RM's SPNEGO principal.
    let target = gss
        .import_name(&format!("HTTP@{host}"), NT_HOSTBASED_SERVICE)
        .map_err(|e| format!("service name HTTP@{host}: {e}"))?;
    let mech = oid(SPNEGO_MECH);
    let mut context = Context {
        gss,
        handle: ptr::null_mut(),
    };
    let mut minor = 0;
    let mut token = Buffer::EMPTY;
    // SAFETY: `cred` and `target` are live handles (a null credential means the default);
    // `mech` outlives the call; no channel bindings, input token, or optional outputs (null);
    // `context.handle` and `token` are live out-pointers, released by their owners.
    let major = unsafe {
        (gss.init_sec_context)(
            &mut minor,
            cred.handle,
            &mut context.handle,
            target.handle,
            &mech,
            GSS_C_MUTUAL_FLAG,
            0,
            ptr::null(),
            ptr::null(),
            ptr::null_mut(),
            &mut token,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let token = gss.take(&mut token);
    if major & GSS_ERROR_MASK != 0 {
        return Err(format!("for HTTP/{host}: {}", gss.error(major, minor)));
    }
    if token.is_empty() {
        return Err("GSSAPI produced no token".into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_the_package_to_install() {
        let err = load(&["libgssapi_krb5_absent.so.2"])
            .err()
            .expect("no such library");
        assert!(err.contains("libgssapi_krb5_absent.so.2"), "{err}");
        assert!(err.contains(LIBRARY_PACKAGE), "{err}");
    }

    /// A principal with no credentials (nothing in any ticket cache or client keytab) fails in
    /// gss_acquire_cred, with GSSAPI's own words from gss_display_status.
    #[test]
    fn a_principal_without_credentials_is_a_readable_error() {
        let principal = "spindle-test-nobody@NO-SUCH-REALM.INVALID";
        let err = initial_token("rm.invalid", Some(principal)).unwrap_err();
        if gss().is_err() {
            assert!(err.contains(LIBRARY_PACKAGE), "{err}");
            return;
        }
        assert!(
            err.starts_with(&format!("no credentials for {principal}: ")),
            "{err}"
        );
        assert!(
            !err.contains("major status"),
            "no text from gss_display_status: {err}"
        );
    }
}
