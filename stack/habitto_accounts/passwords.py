"""Password rules beyond Django's: AUTH_PASSWORD_VALIDATORS lists this one."""

import unicodedata

from django.core.exceptions import ValidationError

_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Zs"}  # controls, format (zero-width) and spaces


class VisibleCharactersValidator:
    """Ten spaces pass the length rule and are in no list of common passwords, yet they
    are among the first things guessed: a password needs at least one visible character."""

    def validate(self, password, user=None):
        if all(unicodedata.category(char) in _INVISIBLE for char in password):
            raise ValidationError(
                "Your password cannot be made only of spaces or invisible characters.",
                code="password_invisible",
            )

    def get_help_text(self):
        return "Your password must contain at least one visible character."
