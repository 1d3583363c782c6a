"""The profile kept beside django.contrib.auth's User: role, phone and picture."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# Loose on purpose: international formats vary; we only refuse what cannot be a number.
phone_validator = RegexValidator(
    r"^\+?[0-9][0-9 ().\-]{4,30}$",
    "Enter a phone number: digits, spaces, ( ) . - and an optional leading +.",
)


class UserType(models.TextChoices):
    """Stored and answered in the shipped app's own words (it compares these strings)."""

    TENANT = "inquilino", "Tenant"
    OWNER = "propietario", "Owner"
    AGENT = "agente", "Agent"


# English names accepted on input (this server's earlier vocabulary); never answered.
USER_TYPE_ALIASES = {"tenant": UserType.TENANT, "owner": UserType.OWNER, "agent": UserType.AGENT}


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    profile_picture = models.ImageField(upload_to="profiles/", blank=True)
    user_type = models.CharField(max_length=16, choices=UserType.choices, default=UserType.TENANT)
    phone = models.CharField(max_length=32, blank=True, validators=[phone_validator])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"Profile of user {self.user_id}"

    def picture_path(self):
        """The picture's URL path (e.g. "/media/profiles/x.png"), or None."""
        return self.profile_picture.url if self.profile_picture else None
