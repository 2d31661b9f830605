# pam-twofa: offer two-factor enrollment on the first interactive shell.
# Install as /etc/profile.d/pam-twofa-enroll.sh (sourced by sh, dash and bash login
# shells). For a user whom the policy requires to use 2FA and who has not set it
# up (enrollment.mode: notice, during the grace period), it starts
# `twofa-enroll --if-needed`, which asks before doing anything; for everyone else
# it prints nothing. Once per session: nested shells inherit TWOFA_ENROLL_OFFERED.
if [ -z "${TWOFA_ENROLL_OFFERED:-}" ] && [ -t 0 ] && [ -t 1 ]; then
    case $- in
    *i*)
        TWOFA_ENROLL_OFFERED=1
        export TWOFA_ENROLL_OFFERED
        if command -v twofa-enroll >/dev/null 2>&1; then
            twofa-enroll --if-needed || :
        fi
        ;;
    esac
fi
