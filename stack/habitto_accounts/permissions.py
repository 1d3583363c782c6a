"""Who may call what. Writes target the caller: the `/me/` routes, and `profiles/<id>/`,
whose view refuses anyone's but the caller's own profile (403)."""

from rest_framework.permissions import BasePermission


class RegistrationOrAuthenticated(BasePermission):
    """POST (registration) is public; everything else needs a logged-in user."""

    def has_permission(self, request, view):
        return request.method == "POST" or bool(request.user and request.user.is_authenticated)


class IsSelf(BasePermission):
    """Objects are the caller's own user or profile; anything else is refused."""

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request, view, obj):
        owner_id = getattr(obj, "user_id", obj.pk)
        return owner_id == request.user.pk
