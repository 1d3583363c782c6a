"""What goes in and out of the accounts API. Other users are only ever shown with
public fields (no email, no phone); the caller's own data adds them."""

import re
import unicodedata

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from habitto_chat.users import display_name

from . import tokens
from .models import USER_TYPE_ALIASES, Profile, UserType, phone_validator
from .pictures import PictureField, replace_picture
from .uniqueness import EMAIL_TAKEN, USERNAME_TAKEN, taken, taken_errors

User = get_user_model()


class RejectUnknownFieldsMixin:
    """Writes name what they change: a key that is not writable here (say `username` or
    `is_staff`) is a 400 rather than silently ignored."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data.keys()) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field cannot be changed here."] for name in unknown}
                )
        return super().to_internal_value(data)


# --- Tokens ----------------------------------------------------------------------


class LoginSerializer(TokenObtainPairSerializer):
    token_class = tokens.RefreshToken


class TokenPairSerializer(serializers.Serializer):
    """What login and refresh answer (in the envelope)."""

    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshSerializer(serializers.Serializer):
    """The app sends the token as both `refresh` and `refresh_token`; either will do."""

    refresh = serializers.CharField(required=False, allow_blank=True)
    refresh_token = serializers.CharField(required=False, allow_blank=True, write_only=True)

    def validate(self, attrs):
        raw = attrs.get("refresh") or attrs.get("refresh_token")
        if not raw:
            raise serializers.ValidationError({"refresh": ["This field is required."]})
        return tokens.rotate(raw)


class LogoutSerializer(serializers.Serializer):
    """The app sends `{}`; a client that also wants its refresh token blacklisted sends it."""

    refresh = serializers.CharField(required=False, allow_blank=True)


# --- Users -----------------------------------------------------------------------


USERNAME_ALPHABET = re.compile(r"[A-Za-z0-9@.+\-_]+")


class UsernameField(serializers.CharField):
    """NFKC first (fullwidth `ａｌｉｃｅ` is `alice`; Django stores NFKC anyway), then a safe
    alphabet: ASCII letters, digits and @ . + - _. Letters from other scripts are
    refused outright, so no username can imitate another with look-alike letters
    (Cyrillic `а` in `аlice`); names with accents belong in first and last name."""

    default_error_messages = {
        "alphabet": "Use only English letters, digits and @ . + - _ in a username "
        "(letters from other alphabets can imitate other people's names)."
    }

    def __init__(self, **kwargs):
        super().__init__(max_length=150, **kwargs)

    def to_internal_value(self, data):
        value = unicodedata.normalize("NFKC", super().to_internal_value(data))
        if not USERNAME_ALPHABET.fullmatch(value):
            self.fail("alphabet")
        return value


class UserTypeField(serializers.ChoiceField):
    """The app's values (inquilino, propietario, agente); the English names are accepted
    as aliases and stored in the app's words."""

    def __init__(self, **kwargs):
        super().__init__(choices=UserType.choices, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data in USER_TYPE_ALIASES:
            return USER_TYPE_ALIASES[data].value
        return super().to_internal_value(data)


def _email(value, exclude_pk=None):
    value = User.objects.normalize_email(value)
    if taken("email", value, exclude_pk):
        raise serializers.ValidationError(EMAIL_TAKEN)
    return value


class PublicUserSerializer(serializers.ModelSerializer):
    full_name = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "full_name"]
        read_only_fields = fields

    def get_full_name(self, user) -> str:
        return display_name(user.first_name, user.last_name, user.username)


class MeSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name"]
        read_only_fields = ["id", "username"]
        extra_kwargs = {"email": {"required": True, "allow_blank": False}}

    def validate_email(self, value):
        return _email(value, exclude_pk=self.instance.pk if self.instance else None)

    def update(self, instance, validated_data):
        try:
            with transaction.atomic():
                return super().update(instance, validated_data)
        except IntegrityError:  # a concurrent registration or change took the email first
            errors = taken_errors(email=validated_data.get("email"))
            if not errors:
                raise
            raise serializers.ValidationError(errors) from None


class RegistrationSerializer(serializers.ModelSerializer):
    username = UsernameField()
    password = serializers.CharField(write_only=True, max_length=256, trim_whitespace=False)
    user_type = UserTypeField(required=False)
    phone = serializers.CharField(
        required=False, allow_blank=True, max_length=32, validators=[phone_validator]
    )
    profile_picture = PictureField(required=False, allow_null=True)

    class Meta:
        model = User
        fields = [
            "username",
            "email",
            "password",
            "first_name",
            "last_name",
            "user_type",
            "phone",
            "profile_picture",
        ]
        extra_kwargs = {"email": {"required": True, "allow_blank": False}}

    def validate_username(self, value):
        if taken("username", value):
            raise serializers.ValidationError(USERNAME_TAKEN)
        return value

    def validate_email(self, value):
        return _email(value)

    def validate(self, attrs):
        candidate = User(
            username=attrs.get("username"),
            email=attrs.get("email"),
            first_name=attrs.get("first_name", ""),
            last_name=attrs.get("last_name", ""),
        )
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs

    def create(self, validated_data):
        profile_fields = {k: validated_data.pop(k) for k in ("user_type", "phone") if k in validated_data}
        picture = validated_data.pop("profile_picture", None)
        try:
            with transaction.atomic():  # user, profile and picture, or nothing
                user = User.objects.create_user(**validated_data)
                profile, _ = Profile.objects.get_or_create(user=user)
                if profile_fields:
                    for name, value in profile_fields.items():
                        setattr(profile, name, value)
                    profile.save()
                if picture:
                    replace_picture(profile, picture)
        except IntegrityError:
            # A concurrent registration took the name or email between our check and our
            # insert; the unique index refused it. Same answer as the check would give.
            errors = taken_errors(username=validated_data["username"], email=validated_data["email"])
            if not errors:
                raise
            raise serializers.ValidationError(errors) from None
        return user


# --- Profiles --------------------------------------------------------------------


def _viewer_id(serializer):
    request = serializer.context.get("request")
    user = getattr(request, "user", None)
    return getattr(user, "pk", None)


class ProfileUserSerializer(PublicUserSerializer):
    """The user inside a profile: what the app's User.fromJson reads. The email is only
    shown to its owner (null for everyone else)."""

    email = serializers.SerializerMethodField()

    class Meta(PublicUserSerializer.Meta):
        fields = PublicUserSerializer.Meta.fields + ["email", "date_joined"]
        read_only_fields = fields

    def get_email(self, user) -> str | None:
        return user.email if user.pk == _viewer_id(self) else None


class ProfileSerializer(serializers.ModelSerializer):
    """A profile as the app's Profile.fromJson reads it, the same shape for everyone;
    phone and the user's email are null except on the caller's own profile."""

    user = ProfileUserSerializer(read_only=True)
    phone = serializers.SerializerMethodField()
    is_verified = serializers.SerializerMethodField()
    favorites = serializers.SerializerMethodField()
    profile_picture_url = serializers.SerializerMethodField()
    profile_picture = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = [
            "id",
            "user",
            "user_type",
            "phone",
            "is_verified",
            "favorites",
            "created_at",
            "updated_at",
            "profile_picture_url",
            "profile_picture",
        ]
        read_only_fields = fields

    def get_phone(self, profile) -> str | None:
        return profile.phone if profile.user_id == _viewer_id(self) else None

    def get_is_verified(self, profile) -> bool:
        return False  # this server does not verify identities (Habitto's backend does)

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_favorites(self, profile):
        return []  # favourite properties live in Habitto's property backend

    def get_profile_picture_url(self, profile) -> str | None:
        path = profile.picture_path()
        request = self.context.get("request")
        return request.build_absolute_uri(path) if path and request else path

    get_profile_picture = get_profile_picture_url  # the app reads either key


class ProfileUpdateSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """Changes to the caller's own profile, JSON or multipart: type, phone, picture.
    Every write path (/me/, update_me, <id>, the picture uploads) goes through here."""

    user_type = UserTypeField(required=False)
    profile_picture = PictureField(required=False, write_only=True)

    class Meta:
        model = Profile
        fields = ["user_type", "phone", "profile_picture"]

    def update(self, profile, validated_data):
        picture = validated_data.pop("profile_picture", None)
        with transaction.atomic():  # fields and picture, or nothing
            super().update(profile, validated_data)
            if picture:
                replace_picture(profile, picture)
        return profile


class PictureUploadSerializer(ProfileUpdateSerializer):
    profile_picture = PictureField(write_only=True)

    class Meta(ProfileUpdateSerializer.Meta):
        fields = ["profile_picture"]
