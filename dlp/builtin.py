"""The built-in pattern library: what regulated data and credentials look like.

Packs (dlp/packs/*.yaml) pick from this library by name and set the action each regulation
calls for; the actions here are the defaults when a pattern is used without a pack override.

Conventions the expressions follow (the engine and the stream window rely on them):

- Written in RE2 syntax that Python's parser reads the same way (no \\p{..}, no POSIX
  classes), so stream hold-back can be derived from them (see prefix.py).
- A named group `value` marks what gets validated and redacted; the rest is context ("DOB:",
  a non-digit before a card number) that stays visible.
- Digit runs tolerate up to three separator characters between any two digits (`SEP`):
  "4111 1111 1111 1111", "4111-1111-1111-1111", "4 1 1 1 . 1 1 1 1 ...", "123/45/6789".
  Runs are matched whole and the validator looks for the real number inside (validators.py),
  so prefixing a card with other digits does not hide it.
- Boundaries use a consumed "not a digit" character rather than \\b where a letter may
  legitimately touch the number ("ID4111111111111111"); the engine resumes scanning at the end
  of `value`, so that character can also start the next match.
"""

from __future__ import annotations

from .engine import Action, PatternSpec

SEP = r"[\s.\-/\\_]{0,3}"  # optional separators between two digits
SEP1 = r"[\s.\-/\\_]{1,3}"  # required separator between digit groups
NOT_DIGIT_BEFORE = r"(?:^|[^0-9])"
NOT_DIGIT_AFTER = r"(?:[^0-9]|$)"


def _digits(count: int) -> str:
    """`count` digits with optional separators between them."""
    return r"\d" + (rf"(?:{SEP}\d){{{count - 1}}}" if count > 1 else "")


_SSN_SHAPE = rf"{_digits(3)}{SEP1}{_digits(2)}{SEP1}{_digits(4)}"
_CONTEXT_GAP = r"\W{0,5}(?:(?:is|was|number|no|num)\W{1,3})?"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{4}[./\-]\d{1,2}[./\-]\d{1,2}"
    r"|\d{1,2}[./\-]\d{1,2}[./\-](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
_BIRTH_CONTEXT = (
    r"(?:d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday|born(?:\s+on)?|geburtsdatum"
    r"|geboren(?:\s+am)?|date\s+de\s+naissance|n[ée]e?\s+le|fecha\s+de\s+nacimiento)"
)
_KEY_HEADER = r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----"
_KEY_FOOTER = r"-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----"


def _p(name: str, category: str, expression: str, *, validator: str = "", action: str, severity: str) -> PatternSpec:
    return PatternSpec(name=name, category=category, expression=expression, validator=validator, action=action, severity=severity)


BUILTIN_PATTERNS: tuple[PatternSpec, ...] = (
    # --- contact details -------------------------------------------------------------------
    _p(
        "email",
        "EMAIL",
        r"(?i)(?P<value>[a-z0-9._%+\-]+@[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?"
        r"(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.[a-z]{2,24})\b",
        action=Action.ALERT,
        severity="medium",
    ),
    _p(
        "phone_international",
        "PHONE",
        r"(?:^|[^\w+])(?P<value>(?:\+|00)\s?[1-9](?:[\s.\-/]{0,2}\(?\d\)?){6,14})",
        validator="phone",
        action=Action.ALERT,
        severity="medium",
    ),
    _p(
        "phone_nanp",
        "PHONE",
        rf"{NOT_DIGIT_BEFORE}(?P<value>(?:\([2-9]\d{{2}}\)\s?|[2-9]\d{{2}}[.\-\s])[2-9]\d{{2}}[.\-\s]\d{{4}}){NOT_DIGIT_AFTER}",
        action=Action.ALERT,
        severity="medium",
    ),
    # --- payment and banking -----------------------------------------------------------------
    _p(
        "credit_card",
        "CREDIT_CARD",
        rf"{NOT_DIGIT_BEFORE}(?P<value>\d(?:{SEP}\d){{11,}})",
        validator="card",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "iban",
        "IBAN",
        r"(?i)\b(?P<value>[a-z]{2}\d{2}(?:[\s.\-]{0,2}[a-z0-9]){11,30})",
        validator="iban",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "aba_routing",
        "ABA_ROUTING",
        rf"(?i)\b(?:aba|routing|rtn|transit)(?:\s+(?:number|no\.?|num|#))?{_CONTEXT_GAP}(?P<value>{_digits(9)}){NOT_DIGIT_AFTER}",
        validator="aba_routing",
        action=Action.REDACT,
        severity="high",
    ),
    # --- national identifiers -----------------------------------------------------------------
    _p(
        "us_ssn",
        "US_SSN",
        rf"{NOT_DIGIT_BEFORE}(?P<value>{_SSN_SHAPE}){NOT_DIGIT_AFTER}",
        validator="us_ssn",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "us_ssn_in_context",
        "US_SSN",
        rf"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?|soc\.?\s*sec\.?){_CONTEXT_GAP}"
        rf"(?P<value>{_digits(9)}){NOT_DIGIT_AFTER}",
        validator="us_ssn",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "us_itin",
        "US_ITIN",
        rf"{NOT_DIGIT_BEFORE}(?P<value>{_SSN_SHAPE}){NOT_DIGIT_AFTER}",
        validator="us_itin",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "uk_nino",
        "UK_NINO",
        rf"(?i)\b(?P<value>[a-z]{SEP}[a-z]{SEP}{_digits(6)}{SEP}[a-d])\b",
        validator="uk_nino",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "nhs_number",
        "NHS_NUMBER",
        rf"(?i)\bnhs(?:\s+(?:number|no\.?|num|#))?{_CONTEXT_GAP}(?P<value>{_digits(10)}){NOT_DIGIT_AFTER}",
        validator="nhs_number",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "passport_in_context",
        "PASSPORT",
        rf"(?i)\bpassport(?:\s+(?:number|no\.?|num|#|id))?{_CONTEXT_GAP}(?P<value>[a-z0-9]{{6,9}})\b",
        validator="passport_number",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "passport_mrz",
        "PASSPORT",
        r"(?P<value>[A-Z0-9<]{9}[0-9][A-Z<]{3}[0-9]{6}[0-9][MFX<][0-9]{6}[0-9][A-Z0-9<]{14}[0-9<][0-9])",
        validator="mrz",
        action=Action.REDACT,
        severity="high",
    ),
    _p(
        "date_of_birth",
        "DATE_OF_BIRTH",
        rf"(?i)\b{_BIRTH_CONTEXT}{_CONTEXT_GAP}(?P<value>{_DATE})",
        validator="birth_date",
        action=Action.REDACT,
        severity="medium",
    ),
    # --- network identifiers -----------------------------------------------------------------
    _p(
        "ipv4",
        "IP_ADDRESS",
        r"\b(?P<value>(?:\d{1,3}\.){3}\d{1,3})\b",
        validator="ipv4",
        action=Action.ALERT,
        severity="low",
    ),
    _p(
        "ipv6",
        "IP_ADDRESS",
        r"(?i)(?:^|[^\w:.])(?P<value>(?:[0-9a-f]{0,4}:){2,6}\d{1,3}(?:\.\d{1,3}){3}"
        r"|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})(?:[^\w:]|$)",
        validator="ipv6",
        action=Action.ALERT,
        severity="low",
    ),
    # --- credentials -------------------------------------------------------------------------
    _p(
        "aws_access_key_id",
        "AWS_CREDENTIAL",
        r"\b(?P<value>(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16})\b",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "aws_secret_access_key",
        "AWS_CREDENTIAL",
        r"(?i)(?:aws|amazon)[\w.\-]{0,30}(?:secret|private)[\w.\-]{0,20}['\"]?\s{0,3}[:=]{1,2}>?\s{0,3}['\"]?"
        r"(?P<value>[a-z0-9/+]{40})(?:[^a-z0-9/+=]|$)",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "gcp_api_key",
        "GCP_CREDENTIAL",
        r"\b(?P<value>AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "gcp_oauth_secret",
        "GCP_CREDENTIAL",
        r"\b(?P<value>GOCSPX-[A-Za-z0-9_\-]{28}|ya29\.[0-9A-Za-z_\-]{20,})",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "gcp_service_account_key_id",
        "GCP_CREDENTIAL",
        r"\"private_key_id\"\s*:\s*\"(?P<value>[0-9a-f]{40})\"",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "azure_storage_key",
        "AZURE_CREDENTIAL",
        r"(?i)(?:accountkey|sharedaccesskey)\s*=\s*(?P<value>[a-z0-9+/]{42,86}={0,2})",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "azure_sas_signature",
        "AZURE_CREDENTIAL",
        r"(?i)[?&]sig=(?P<value>[a-z0-9%+/]{40,}(?:%3d|=){0,2})",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "azure_client_secret",
        "AZURE_CREDENTIAL",
        r"(?:^|[^A-Za-z0-9_~.\-])(?P<value>[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34})(?:[^A-Za-z0-9_~.\-]|$)",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "github_token",
        "GITHUB_TOKEN",
        r"\b(?P<value>gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "slack_token",
        "SLACK_TOKEN",
        r"(?P<value>\bxox[abposre]-[A-Za-z0-9\-]{10,250}|\bxapp-\d-[A-Za-z0-9\-]{10,250}"
        r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,})",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "openai_api_key",
        "OPENAI_KEY",
        r"\b(?P<value>sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
        r"|sk-[A-Za-z0-9]{48})",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "anthropic_api_key",
        "ANTHROPIC_KEY",
        r"\b(?P<value>sk-ant-(?:api|admin|sid|oat)\d{2}-[A-Za-z0-9_\-]{32,})",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "stripe_secret_key",
        "STRIPE_KEY",
        r"\b(?P<value>(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}|whsec_[A-Za-z0-9]{32,})\b",
        validator="not_placeholder",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "private_key_block",
        "PRIVATE_KEY",
        # The whole block when its footer is there; otherwise the header and the base64 body
        # that follows it, so a stream is stopped (and a truncated paste redacted) at the header.
        rf"(?P<value>{_KEY_HEADER}(?:[\s\S]*?{_KEY_FOOTER}|[A-Za-z0-9+/=\s:,\-\\]*))",
        action=Action.BLOCK,
        severity="critical",
    ),
    _p(
        "jwt",
        "JWT",
        r"\b(?P<value>eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*)",
        validator="jwt",
        action=Action.REDACT,
        severity="high",
    ),
    # --- crypto wallets ----------------------------------------------------------------------
    _p(
        "bitcoin_address",
        "CRYPTO_WALLET",
        r"(?:^|[^A-Za-z0-9])(?P<value>[13][a-km-zA-HJ-NP-Z1-9]{25,34}|(?i:bc1)[02-9ac-hj-np-zAC-HJ-NP-Z]{11,87})"
        r"(?:[^A-Za-z0-9]|$)",
        validator="bitcoin",
        action=Action.ALERT,
        severity="medium",
    ),
    _p(
        "ethereum_address",
        "CRYPTO_WALLET",
        r"\b(?P<value>0x[0-9a-fA-F]{40})\b",
        action=Action.ALERT,
        severity="medium",
    ),
)

BY_NAME: dict[str, PatternSpec] = {spec.name: spec for spec in BUILTIN_PATTERNS}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(spec.category for spec in BUILTIN_PATTERNS))
