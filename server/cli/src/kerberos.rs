//! `--keytab FILE --principal NAME`: the Kerberos login of every command that reaches HDFS or
//! the ResourceManager of a secured cluster. Global flags, so they sit anywhere on the command
//! line (`spindle serve --keytab ...`, `spindle yarn status --keytab ...`).

use clap::Args;
use spindle_core::UsageError;
use std::ffi::OsString;
use std::path::PathBuf;

/// MIT Kerberos' client keytab: GSSAPI gets (and renews) initial tickets from it on demand.
const CLIENT_KEYTAB_ENV: &str = "KRB5_CLIENT_KTNAME";

/// Kerberos options shared by every command.
#[derive(Args, Debug, Clone, Default)]
pub struct KerberosArgs {
    /// Kerberos keytab to log in from, for a secured HDFS and ResourceManager (with
    /// --principal). The login is kept in memory and renewed from the keytab before the ticket
    /// expires. Without it, the ticket cache of `kinit` (KRB5CCNAME) is used. A secured HDFS
    /// also needs its client configuration: HADOOP_CONF_DIR with the cluster's hdfs-site.xml
    /// (dfs.data.transfer.protection).
    #[arg(long, global = true, value_name = "FILE", requires = "principal")]
    pub keytab: Option<PathBuf>,
    /// Kerberos principal whose key --keytab holds, e.g. spindle@EXAMPLE.COM.
    #[arg(long, global = true, value_name = "NAME", requires = "keytab")]
    pub principal: Option<String>,
}

impl KerberosArgs {
    /// With `--keytab`: the environment MIT's GSSAPI needs, `KRB5_CLIENT_KTNAME` set to the
    /// keytab and `KRB5CCNAME` to a private in-memory ticket cache, so that SPNEGO to the
    /// ResourceManager logs in from the keytab, and again when the ticket expires, without
    /// touching the user's own cache. Empty when there is no keytab, or when this process
    /// already runs with it (after the re-execution in `main`).
    pub fn exec_env(&self) -> std::io::Result<Vec<(&'static str, OsString)>> {
        let Some(keytab) = &self.keytab else {
            return Ok(Vec::new());
        };
        let keytab = std::path::absolute(keytab)?;
        if std::env::var_os(CLIENT_KEYTAB_ENV).as_deref() == Some(keytab.as_os_str()) {
            return Ok(Vec::new());
        }
        Ok(vec![
            (CLIENT_KEYTAB_ENV, keytab.into_os_string()),
            (
                "KRB5CCNAME",
                format!("MEMORY:spindle-{}", std::process::id()).into(),
            ),
        ])
    }

    /// Sets the process's Kerberos login when `--keytab` was given; a keytab that cannot be
    /// read is a usage error.
    pub fn apply(&self) -> Result<(), UsageError> {
        let (Some(keytab), Some(principal)) = (&self.keytab, &self.principal) else {
            return Ok(());
        };
        spindle_loader::set_kerberos_login(spindle_loader::KerberosLogin {
            keytab: keytab.clone(),
            principal: principal.clone(),
        })
        .map_err(UsageError)
    }
}
