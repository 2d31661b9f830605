"""The PAM face: module arguments in, a PAM code out, every exception mapped here.

Module arguments (pam_twofa(8)) are parsed strictly and override the policy file
(defaults < file < arguments); nothing comes from the environment except what sshd
puts in the PAM environment (SSH_CONNECTION, SSH_AUTH_INFO_0), which describes the
login. Once the client's input was read (an answer, or a hostile user name or
PAM_RHOST), failmode never applies: whatever goes wrong after it is a refusal.
"""

from __future__ import annotations

import os

from pam_twofa import log
from pam_twofa.errors import PolicyError, TwofaError, UsageError
from pam_twofa.login import ClockHint, Conversation, Notifier
from pam_twofa.paths import Paths
from pam_twofa.record import Record
from pam_twofa.store import fleet_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.login import Clock
    from pam_twofa.policy import Policy
    from pam_twofa.store import Store

    PamHandle = Any

FLAGS = ("debug", "require_publickey")
VALUED = {  # name: allowed values (None: an absolute path)
    "policy": None, "state_dir": None, "log_socket": None,
    "failmode": ("secure", "safe"),
    "single_prompt": ("ask", "verify"),
    "unprivileged": ("refuse", "ignore"),
}


class Options(Record):
    paths: Paths
    debug: bool = False
    failmode: str | None = None  # None: the policy's
    single_prompt: str | None = None  # "ask" or "verify"; see pam_twofa.single
    require_publickey: bool = False  # refuse unless sshd saw a key first
    unprivileged: str = "refuse"  # see pam_twofa.caller


def parse_args(args: list[str]) -> Options:
    """Module arguments to Options; an unknown or malformed one is an error."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    for arg in args:
        name, eq, value = arg.partition("=")
        if not eq and name in FLAGS:
            flags.add(name)
        elif arg == "single_prompt":
            raise UsageError("single_prompt takes a value: single_prompt=ask before the "
                             "password module and single_prompt=verify after it")
        elif eq and name in VALUED and value:
            if name in values:
                raise UsageError(f"module argument {name} given twice")
            allowed = VALUED[name]
            if allowed is None and not value.startswith("/"):
                raise UsageError(f"{name} must be an absolute path")
            if allowed is not None and value not in allowed:
                raise UsageError(f"{name} must be {' or '.join(allowed)}, not {value!r}")
            values[name] = value
        else:
            raise UsageError(f"unknown or malformed module argument {arg!r}")
    paths = Paths(
        policy=values.get("policy", Paths.policy),
        policy_explicit="policy" in values,
        state_dir=values.get("state_dir", Paths.state_dir).rstrip("/") or "/",
        log_socket=values.get("log_socket", Paths.log_socket),
    )
    return Options(paths=paths, debug="debug" in flags, failmode=values.get("failmode"),
                   single_prompt=values.get("single_prompt"),
                   require_publickey="require_publickey" in flags,
                   unprivileged=values.get("unprivileged", "refuse"))


UNDECODABLE = "\ufffd"  # an answer pam_python could not decode: never a code, never "y"

class PamConversation(Conversation):
    """``login.Conversation`` over pamh.conversation; honours PAM_SILENT. ``asked``:
    a prompt went out, so failmode no longer applies (``_Login.failed``)."""

    def __init__(self, pamh: PamHandle, silent: bool) -> None:
        self.pamh = pamh
        self.silent = silent
        self.asked = False

    def _say(self, style: int, text: str) -> str | None:
        pamh = self.pamh
        try:
            response = pamh.conversation(pamh.Message(style, text))
        except pamh.exception:
            return None
        except UnicodeDecodeError:  # pam_python decodes strictly: bytes that are no text
            return UNDECODABLE  # a wrong answer, counted like one
        answer = getattr(response, "resp", None)
        return answer if isinstance(answer, str) else None

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        self.asked = True
        style = self.pamh.PAM_PROMPT_ECHO_ON if echo else self.pamh.PAM_PROMPT_ECHO_OFF
        return self._say(style, prompt)

    def info(self, text: str) -> None:
        if not self.silent:
            self._say(self.pamh.PAM_TEXT_INFO, text)

    def error(self, text: str) -> None:
        if not self.silent:
            self._say(self.pamh.PAM_ERROR_MSG, text)


class _Mail(Notifier):
    """Notices and emergency codes by mail; the mail modules load only for a mail."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def notice(self, event: str, user: str, address: str, **facts: Any) -> bool:
        from pam_twofa.mail import notify

        return notify.MailNotifier(self.policy).notice(event, user, address, **facts)

    def send_code(self, user: str, address: str, code: str, *, minutes: int,
                  client: str | None, now: float) -> tuple[bool, str]:
        from pam_twofa.mail import notify

        return notify.MailNotifier(self.policy).send_code(
            user, address, code, minutes=minutes, client=client, now=now)


class _StatusFile(ClockHint):
    """twofa-clockcheck's status file, read only on a refused code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def offset_beyond(self, covered: float, now: float) -> float | None:
        from pam_twofa import clockstatus

        return clockstatus.FileHint(self.path).offset_beyond(covered, now)


def _env(pamh: PamHandle, name: str) -> str | None:
    try:
        value = pamh.env.get(name)
    except Exception:  # pam_python raises on odd env entries; the field is optional
        return None
    return value if isinstance(value, str) else None


def _undecoded(exc: UnicodeDecodeError) -> str:
    """Undecodable bytes as surrogate-escaped text: logged escaped, refused as a name."""
    raw = exc.object if isinstance(exc.object, bytes) else bytes(exc.object)
    return raw.decode("utf-8", "surrogateescape")


def has_publickey(auth_info: str | None) -> bool:
    """Whether sshd's SSH_AUTH_INFO_0 lists a completed ``publickey`` method."""
    return any(line.split(" ", 1)[0] == "publickey" for line in (auth_info or "").split("\n"))


def open_store(policy: Policy, options: Options, login: _Login, clock: Clock) -> Store:
    """This host's files or the fleet (``store.fleet_socket``); ``failmode=safe`` is
    refused with the fleet (a dead database must not let everyone in)."""
    if (fleet := fleet_socket(policy)) is None:
        from pam_twofa.filestore import FileStore

        return FileStore(options.paths, clock)
    if options.failmode == "safe":
        login.failmode = "secure"
        raise UsageError("failmode=safe is not allowed with store.backend: postgresql")
    from pam_twofa.fleetstore import FleetStore
    return FleetStore(*fleet)


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
    """One ``pam_sm_authenticate`` call: what is known so far, for the log line.

    ``hostile`` is set when the user name or PAM_RHOST came in as something no
    honest client sends (not UTF-8, or a name that cannot be a file name); with
    ``conv.asked`` it makes ``after_input``: from then on failmode never applies.
    """

    def __init__(self, pamh: PamHandle, flags: int) -> None:
        self.pamh = pamh
        try:
            self.service = str(getattr(pamh, "service", None) or "?")
        except UnicodeDecodeError as exc:
            self.service = _undecoded(exc)
        self.sink = log.SyslogSink(f"pam_twofa({log.escape(self.service)}:auth)")
        self.conv = PamConversation(pamh, bool(flags & pamh.PAM_SILENT))
        self.failmode: str | None = None
        self.user: str | None = None
        self.rhost: str | None = None  # for decisions: None when absent or not text
        self.rhost_shown = "-"  # for the log: as given, escaped
        self.hostile = False
        self.require_publickey = False

    @property
    def after_input(self) -> bool:
        """Input from the client was read: hostile input is a wrong answer, not an error."""
        return self.hostile or self.conv.asked

    def run(self, args: list[str]) -> int:
        pamh = self.pamh
        self._early(args)
        self._read_user()
        self._read_rhost()
        if self.require_publickey and not has_publickey(_env(pamh, "SSH_AUTH_INFO_0")):
            return self._refuse("no-publickey")  # every user: pam_permit may follow
        options = parse_args(args)
        self.failmode = options.failmode
        self.sink = log.SyslogSink(self.sink.prefix, options.paths.log_socket, options.debug)
        if self.user is None:
            raise UsageError("no user name from PAM")
        if options.single_prompt == "ask":  # before the password module: decide nothing
            return self._single_prompt_ask(options)
        unprivileged = False
        if os.geteuid() != 0 and not self.hostile:  # a screen locker runs PAM as the user
            from pam_twofa import caller

            unprivileged = caller.unprivileged(options.paths.state_dir)
            if unprivileged and self._caller_is_user(options):
                self.sink.log(log.NOTICE, "", user=self.user, rhost=self.rhost_shown,
                              result="ignored", reason="unprivileged-caller")
                return int(pamh.PAM_IGNORE)
        return self._decide(options, unprivileged)

    def _decide(self, options: Options, unprivileged: bool) -> int:
        from pam_twofa import core, policyfile
        from pam_twofa.login import Clock, Outcome, Request, lookup

        pamh = self.pamh
        assert self.user is not None
        loaded = policyfile.load_in_force(options.paths)
        policy = loaded.policy
        clock = Clock()
        store = open_store(policy, options, self, clock)  # failmode=safe: refused for a fleet
        self.failmode = options.failmode or policy.failmode
        if loaded.error is not None:  # a broken file: the last valid policy decides
            self.sink.log(log.ERR, "error: " + log.clean(loaded.error), user=self.user,
                          reason="bad-policy", policy_in_force="last-valid")
        if unprivileged:  # the state is out of reach: an internal error, as before
            return self.failed("unprivileged-caller", (
                f"uid {os.getuid()} cannot use the state directory "
                f"{options.paths.state_dir}: leave this service out of the module's "
                "stacks, or give its line unprivileged=ignore (pam_twofa(8))"))
        self.sink.log(log.DEBUG, "", user=self.user, policy=options.paths.policy,
                      state_dir=options.paths.state_dir, scope=policy.mandatory.scope,
                      failmode=self.failmode, single_prompt=options.single_prompt)
        code = None
        if options.single_prompt == "verify":  # the code the "ask" line kept
            from pam_twofa import single

            code = single.take(pamh)
            if code is None:
                return self.failed("bad-stack", "single_prompt=verify found no answer: "
                                   "put a single_prompt=ask line before the password module")
            self.conv.asked = True  # the code is the user's input
        request = Request(
            user=self.user,
            account=lookup(self.user),
            conversation=self.conv,
            service=self.service,
            rhost=self.rhost,
            ssh_connection=_env(pamh, "SSH_CONNECTION"),
            ssh_auth_info=_env(pamh, "SSH_AUTH_INFO_0"),
            code=code,
        )
        decision = core.authenticate(request, policy, store, clock, _Mail(policy),
                                     _StatusFile(options.paths.clock_status))
        refused = decision.outcome == Outcome.REFUSE
        offset = dict(decision.fields).get("clock_offset") if refused else None
        if offset is not None:  # the last twofa-clockcheck saw more skew than the window
            self.sink.log(log.WARNING, "server clock may be off: see twofa-clockcheck",
                          user=self.user, clock_offset=offset)
        self.sink.log(log.NOTICE if refused else log.INFO, "", user=self.user,
                      rhost=self.rhost_shown, result=decision.outcome,
                      reason=decision.reason, **dict(decision.fields))
        if decision.outcome == Outcome.SUCCESS:
            return int(pamh.PAM_SUCCESS)
        if decision.outcome == Outcome.IGNORE:
            return int(pamh.PAM_IGNORE)
        return int(pamh.PAM_AUTH_ERR)

    def _single_prompt_ask(self, options: Options) -> int:
        """Ask once, hand the password on, keep the code for the verify line."""
        from pam_twofa import policyfile, single
        from pam_twofa.login import Clock

        assert self.user is not None
        policy = policyfile.load_in_force(options.paths).policy
        store = open_store(policy, options, self, Clock())
        if not single.ask(self.pamh, self.conv, store, self.user):
            return self._refuse("no-answer")
        self.sink.log(log.DEBUG, "", user=self.user, single_prompt="ask")
        return int(self.pamh.PAM_IGNORE)  # the password module, then the verify line, decide

    def _caller_is_user(self, options: Options) -> bool:
        """``unprivileged=ignore`` and the process authenticates its own user: a
        screen locker; never a daemon checking other users' passwords."""
        from pam_twofa.login import lookup

        if options.unprivileged != "ignore" or self.user is None:
            return False
        account = lookup(self.user)
        return account is not None and account.uid == os.getuid()

    def _refuse(self, reason: str) -> int:
        self.sink.log(log.NOTICE, "", user=self.user or "-", rhost=self.rhost_shown,
                      result="refused", reason=reason)
        return int(self.pamh.PAM_AUTH_ERR)

    def _read_user(self) -> None:
        """The user name; one that is not text or cannot be a file name is hostile
        (the core still prompts for it, then refuses: no account enumeration)."""
        from pam_twofa.errors import InvalidUserName
        from pam_twofa.login import validate_user_name

        pamh = self.pamh
        try:
            user = pamh.get_user(None)
        except pamh.exception:
            return
        except UnicodeDecodeError as exc:
            user = _undecoded(exc)
        if not isinstance(user, str):
            return
        self.user = user
        try:
            validate_user_name(user)
        except InvalidUserName:
            self.hostile = True

    def _read_rhost(self) -> None:
        """PAM_RHOST: the client's own word (a DNS name it controls, under sshd with
        UseDNS). Not text: treated as absent (no IP, so no trusted device; the code
        is asked as always) and logged escaped; the login is hostile from then on."""
        try:
            rhost = getattr(self.pamh, "rhost", None)
        except UnicodeDecodeError as exc:
            self.hostile = True
            self.rhost_shown = _undecoded(exc)
            return
        if isinstance(rhost, str) and rhost:
            self.rhost = self.rhost_shown = rhost

    def _early(self, args: list[str]) -> None:
        """Take failmode=, log_socket= and the arguments that only refuse before the
        strict parse, so a typo in another argument is still logged where the admin
        looks, fails as the admin chose, and cannot switch a refusal off."""
        for arg in args:
            name, _, value = arg.partition("=")
            if name == "failmode" and value in ("secure", "safe"):
                self.failmode = value
            elif name == "log_socket" and value.startswith("/"):
                self.sink = log.SyslogSink(self.sink.prefix, value)
        self.require_publickey = "require_publickey" in args
        if "single_prompt" in args:  # the old one-line form checked the code before the
            self.failmode = "secure"  # password: refused whatever failmode says

    def failed(self, reason: str, detail: str) -> int:
        """An internal error: deny (secure, the default) or ignore (safe); always logged.

        After input was read (or with a hostile name or rhost), failmode never
        applies: refused."""
        failmode = self.failmode or "secure"
        safe = failmode == "safe" and not self.after_input
        mode = {"after_input": "yes"} if self.after_input else {"failmode": failmode}
        self.sink.log(log.ERR, "error: " + log.clean(detail), user=self.user or "-",
                      rhost=self.rhost_shown, result="ignored" if safe else "refused",
                      reason=reason, **mode)
        if safe:
            return int(self.pamh.PAM_IGNORE)
        from pam_twofa.login import MSG_UNAVAILABLE

        self.conv.error(MSG_UNAVAILABLE)
        return int(self.pamh.PAM_AUTH_ERR)
