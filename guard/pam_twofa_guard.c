/* pam_twofa_guard.so: start pam_python's interpreter from fixed paths (README "Security notes").
 *
 * pam_python starts CPython with no program name, so CPython looks for its standard library
 * through the caller's PATH (or the current directory): under su, sudo or chsh the caller
 * chooses both, and a crafted encodings/__init__.py would run as root.  pam_python starts an
 * interpreter only when none is running, and uses a running one as it is.  So this module,
 * on the line before pam_python.so, starts it first from fixed paths and never finalises it:
 *
 *   auth [success=1 ignore=ignore default=die] pam_twofa_guard.so
 *   auth required pam_python.so pam_twofa.py ...
 *
 * authenticate: PAM_IGNORE (pam_python runs next), PAM_SYSTEM_ERR if the start failed (die).
 * setcred: PAM_SUCCESS, which jumps over pam_python (nothing to set; saves a second start).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <security/pam_modules.h>
#include <sys/auxv.h>

/* Debian's standard library and its packages (yaml, qrcode, pyotp), for the Python this is
 * built against (3.11 on Debian 12).  Not /usr/local: pip installs land there, and on older
 * Debian it is writable by group staff. */
#define MAJ Py_STRINGIFY(PY_MAJOR_VERSION)
#define MIN Py_STRINGIFY(PY_MINOR_VERSION)
static const wchar_t *const search_path[] = {
	L"/usr/lib/python" MAJ MIN ".zip", L"/usr/lib/python" MAJ "." MIN,
	L"/usr/lib/python" MAJ "." MIN "/lib-dynload", L"/usr/lib/python3/dist-packages",
};

static int start_python(void)
{
	PyPreConfig pre;
	PyConfig c;
	PyStatus s;
	size_t i;

	if (Py_IsInitialized())
		return 0;            /* already ours (or the host's): pam_python reuses it */
	PyPreConfig_InitIsolatedConfig(&pre); /* ignores PYTHON* variables, never calls setlocale */
	pre.utf8_mode = 1;   /* UTF-8 whatever locale the caller chose */
	s = Py_PreInitialize(&pre);
	if (PyStatus_Exception(s))
		return -1;
	PyConfig_InitIsolatedConfig(&c);
	c.isolated = 1;               /* -I */
	c.use_environment = 0;        /* -E: no PYTHONPATH, PYTHONHOME, PYTHONSTARTUP... */
	c.user_site_directory = 0;    /* -s: no ~/.local */
	c.site_import = 0;            /* -S: no .pth files; search_path says it all (and is faster) */
	c.safe_path = 1;              /* -P: no cwd or script dir on sys.path */
	c.write_bytecode = 0;         /* root never writes .pyc files into the tree */
	c.install_signal_handlers = 0; /* the host's SIGINT etc. stay the host's */
	c.parse_argv = 0;
	s = PyConfig_SetString(&c, &c.program_name, L"/usr/bin/python3"); /* never PATH, never cwd */
	if (!PyStatus_Exception(s))
		s = PyConfig_SetString(&c, &c.executable, L"/usr/bin/python3");
	if (!PyStatus_Exception(s))
		s = PyConfig_SetString(&c, &c.home, L"/usr"); /* sys.prefix: no search at all */
	c.module_search_paths_set = 1;
	for (i = 0; i < sizeof search_path / sizeof *search_path && !PyStatus_Exception(s); i++)
		s = PyWideStringList_Append(&c.module_search_paths, search_path[i]);
	if (!PyStatus_Exception(s))
		s = Py_InitializeFromConfig(&c); /* this thread keeps the GIL, as pam_python expects */
	PyConfig_Clear(&c);
	return PyStatus_Exception(s) ? -1 : 0;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh; (void)flags; (void)argc; (void)argv;
	return start_python() == 0 ? PAM_IGNORE : PAM_SYSTEM_ERR;
}

#define DECIDES_NOTHING(fn, rc) \
	PAM_EXTERN int fn(pam_handle_t *pamh, int flags, int argc, const char **argv) \
	{ (void)pamh; (void)flags; (void)argc; (void)argv; return rc; }

/* PAM_SUCCESS jumps over pam_python's setcred (success=1) in a fresh chain (sshd's second
 * handle, sudo's NOPASSWD).  Where authenticate ran in this handle, Linux-PAM replays its
 * results and pam_python's setcred runs in the interpreter started above.  Defence in depth
 * for stacks that reach pam_python's setcred some other way: in a setuid program
 * (AT_SECURE) the interpreter is started here first, from the same fixed paths. */
PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh; (void)flags; (void)argc; (void)argv;
	if (getauxval(AT_SECURE) && start_python() != 0)
		return PAM_SYSTEM_ERR;
	return PAM_SUCCESS;
}

DECIDES_NOTHING(pam_sm_acct_mgmt, PAM_IGNORE)
DECIDES_NOTHING(pam_sm_open_session, PAM_IGNORE)
DECIDES_NOTHING(pam_sm_close_session, PAM_IGNORE)
DECIDES_NOTHING(pam_sm_chauthtok, PAM_IGNORE)
