"""Every user gets a profile when it is created, however it is created (registration,
createsuperuser, the admin). Bulk creation bypasses signals and creates its own."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import Profile


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.create_profile")
def create_profile(sender, instance, created, raw=False, **kwargs):
    if created and not raw:  # raw: loading fixtures, which bring their own profiles
        Profile.objects.get_or_create(user=instance)
