"""The PAM face: module arguments in, a PAM code out, every exception mapped here.

Module arguments (after the module path), strictly parsed like the policy:
``policy=FILE``, ``state_dir=DIR``, ``log_socket=PATH``, ``failmode=secure|safe``,
``debug``, ``single_prompt`` (see ``pam_twofa.single``). They override the policy
file (defaults < file < arguments). Nothing is read from the environment except the
PAM environment sshd hands over (SSH_CONNECTION, SSH_AUTH_INFO_0), which
describes the login, not the config.
"""

from __future__ import annotations

from pam_twofa import log
from pam_twofa.core import Conversation
from pam_twofa.errors import PolicyError, TwofaError, UsageError
from pam_twofa.paths import Paths
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    PamHandle = Any

FLAGS = ("debug", "single_prompt")
VALUED = ("policy", "state_dir", "log_socket", "failmode")


class Options(Record):
    paths: Paths
    debug: bool = False
    failmode: str | None = None  # None: the policy's
    single_prompt: bool = False  # one "password+code" prompt; see pam_twofa.single


def parse_args(args: list[str]) -> Options:
    """Module arguments to Options; an unknown or malformed one is an error."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    for arg in args:
        name, eq, value = arg.partition("=")
        if not eq and name in FLAGS:
            flags.add(name)
        elif eq and name in VALUED and value:
            if name in values:
                raise UsageError(f"module argument {name} given twice")
            values[name] = value
        else:
            raise UsageError(f"unknown or malformed module argument {arg!r}")
    failmode = values.get("failmode")
    if failmode not in (None, "secure", "safe"):
        raise UsageError(f"failmode must be secure or safe, not {failmode!r}")
    for name in ("policy", "state_dir", "log_socket"):
        if name in values and not values[name].startswith("/"):
            raise UsageError(f"{name} must be an absolute path")
    paths = Paths(
        policy=values.get("policy", Paths.policy),
        policy_explicit="policy" in values,
        state_dir=values.get("state_dir", Paths.state_dir).rstrip("/") or "/",
        log_socket=values.get("log_socket", Paths.log_socket),
    )
    return Options(paths=paths, debug="debug" in flags, failmode=failmode,
                   single_prompt="single_prompt" in flags)


class PamConversation(Conversation):
    """``core.Conversation`` over pamh.conversation; honours PAM_SILENT."""

    def __init__(self, pamh: PamHandle, silent: bool) -> None:
        self.pamh = pamh
        self.silent = silent

    def _say(self, style: int, text: str) -> str | None:
        pamh = self.pamh
        try:
            response = pamh.conversation(pamh.Message(style, text))
        except pamh.exception:
            return None
        answer = getattr(response, "resp", None)
        return answer if isinstance(answer, str) else None

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        style = self.pamh.PAM_PROMPT_ECHO_ON if echo else self.pamh.PAM_PROMPT_ECHO_OFF
        return self._say(style, prompt)

    def info(self, text: str) -> None:
        if not self.silent:
            self._say(self.pamh.PAM_TEXT_INFO, text)

    def error(self, text: str) -> None:
        if not self.silent:
            self._say(self.pamh.PAM_ERROR_MSG, text)


def _env(pamh: PamHandle, name: str) -> str | None:
    try:
        value = pamh.env.get(name)
    except Exception:  # pam_python raises on odd env entries; the field is optional
        return None
    return value if isinstance(value, str) else None


def authenticate(pamh: PamHandle, flags: int, argv: list[str]) -> int:
    """``pam_sm_authenticate``: run the core, log once, map to a PAM code."""
    login = _Login(pamh, flags)
    try:
        return login.run(list(argv[1:]))
    except TwofaError as exc:
        if isinstance(exc, PolicyError) and login.failmode is None:
            login.failmode = exc.failmode
        return login.failed(exc.reason, exc.message)
    except Exception as exc:  # a bug: never let it escape as PAM_SERVICE_ERR unlogged
        return login.failed("internal-error", f"{type(exc).__name__}: {exc}")
    finally:
        login.sink.close()


class _Login:
    """One ``pam_sm_authenticate`` call: what is known so far, for the log line."""

    def __init__(self, pamh: PamHandle, flags: int) -> None:
        self.pamh = pamh
        self.service = str(getattr(pamh, "service", None) or "?")
        self.sink = log.SyslogSink(f"pam_twofa({log.escape(self.service)}:auth)")
        self.conv = PamConversation(pamh, bool(flags & pamh.PAM_SILENT))
        self.failmode: str | None = None
        self.user: str | None = None
        self.rhost: str | None = None

    def run(self, args: list[str]) -> int:
        from pam_twofa import accounts, core, policyfile
        from pam_twofa.clock import Clock
        from pam_twofa.store import FileStore

        pamh = self.pamh
        self._early(args)
        options = parse_args(args)
        self.failmode = options.failmode
        self.sink = log.SyslogSink(self.sink.prefix, options.paths.log_socket, options.debug)
        self.rhost = getattr(pamh, "rhost", None)
        try:
            self.user = pamh.get_user(None)
        except pamh.exception:
            self.user = None
        if not self.user:
            raise UsageError("no user name from PAM")
        loaded = policyfile.load_in_force(options.paths)
        policy = loaded.policy
        self.failmode = options.failmode or policy.failmode
        if loaded.error is not None:  # a broken file: the last valid policy decides
            self.sink.log(log.ERR, "error: " + log.clean(loaded.error), user=self.user,
                          reason="bad-policy", policy_in_force="last-valid")
        self.sink.log(log.DEBUG, "", user=self.user, policy=options.paths.policy,
                      state_dir=options.paths.state_dir, scope=policy.mandatory.scope,
                      failmode=self.failmode, single_prompt=options.single_prompt)
        clock = Clock(status_path=options.paths.clock_status)  # read only on a wrong code
        store = FileStore(options.paths, clock)
        code = None
        if options.single_prompt:  # password+code in one answer; the password goes on
            from pam_twofa import single

            code = single.take(pamh, self.conv, store, self.user)
            if code is None:
                self.sink.log(log.NOTICE, "", user=self.user, rhost=self.rhost or "-",
                              result=core.Outcome.REFUSE, reason="no-answer")
                return int(pamh.PAM_AUTH_ERR)
        request = core.Request(
            user=self.user,
            account=accounts.lookup(self.user),
            conversation=self.conv,
            service=self.service,
            rhost=self.rhost,
            ssh_connection=_env(pamh, "SSH_CONNECTION"),
            ssh_auth_info=_env(pamh, "SSH_AUTH_INFO_0"),
            code=code,
        )
        decision = core.authenticate(request, policy, store, clock)
        refused = decision.outcome == core.Outcome.REFUSE
        offset = dict(decision.fields).get("clock_offset") if refused else None
        if offset is not None:  # the last twofa-clockcheck saw more skew than the window
            self.sink.log(log.WARNING, "server clock may be off: see twofa-clockcheck",
                          user=self.user, clock_offset=offset)
        self.sink.log(log.NOTICE if refused else log.INFO, "", user=self.user,
                      rhost=self.rhost or "-", result=decision.outcome,
                      reason=decision.reason, **dict(decision.fields))
        if decision.outcome == core.Outcome.SUCCESS:
            return int(pamh.PAM_SUCCESS)
        if decision.outcome == core.Outcome.IGNORE:
            return int(pamh.PAM_IGNORE)
        return int(pamh.PAM_AUTH_ERR)

    def _early(self, args: list[str]) -> None:
        """Take failmode= and log_socket= before the strict parse, so a typo in
        another argument is still logged where the admin looks, and fails as
        the admin chose."""
        for arg in args:
            name, _, value = arg.partition("=")
            if name == "failmode" and value in ("secure", "safe"):
                self.failmode = value
            elif name == "log_socket" and value.startswith("/"):
                self.sink = log.SyslogSink(self.sink.prefix, value)

    def failed(self, reason: str, detail: str) -> int:
        """An internal error: deny (secure, the default) or ignore (safe); always logged."""
        failmode = self.failmode or "secure"
        safe = failmode == "safe"
        self.sink.log(log.ERR, "error: " + log.clean(detail), user=self.user or "-",
                      rhost=self.rhost or "-", result="ignored" if safe else "refused",
                      reason=reason, failmode=failmode)
        if safe:
            return int(self.pamh.PAM_IGNORE)
        from pam_twofa.core import MSG_UNAVAILABLE

        self.conv.error(MSG_UNAVAILABLE)
        return int(self.pamh.PAM_AUTH_ERR)
