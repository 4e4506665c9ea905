import re

from django.core.validators import EmailValidator


class ContactEmailValidator(EmailValidator):
    """Django's, also taking UTF-8 before the @ (RFC 6531), as in "müller@example.com".

    Its patterns are compiled here rather than lazily: an import checks every row's address.
    """

    _atext = r"[-!#$%&'*+/=?^_`{}|~0-9A-Z\u0080-\U0010FFFF]+"
    user_regex = re.compile(
        rf"(^{_atext}(\.{_atext})*\Z"
        r'|^"([\001-\010\013\014\016-\037!#-\[\]-\177]|\\[\001-\011\013\014\016-\177])*"\Z)',
        re.IGNORECASE,
    )
    domain_regex = re.compile(EmailValidator.domain_regex.pattern, re.IGNORECASE)
    literal_regex = re.compile(EmailValidator.literal_regex.pattern, re.IGNORECASE)


validate_email = ContactEmailValidator(message="Not a valid email address.")
