"""What goes in and out of the accounts API. Other users are only ever shown through
PublicUserSerializer (no email, no phone); the caller's own data through MeSerializer."""

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from habitto_chat.users import display_name

from . import tokens
from .models import Profile, UserType, phone_validator
from .pictures import PictureField, replace_picture

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
    refresh = serializers.CharField()


# --- Users -----------------------------------------------------------------------


def _unique_email(value, exclude_pk=None):
    value = User.objects.normalize_email(value)
    others = User.objects.filter(email__iexact=value)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    if others.exists():
        raise serializers.ValidationError("A user with this email already exists.")
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
        return _unique_email(value, exclude_pk=self.instance.pk if self.instance else None)


class RegistrationSerializer(serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, max_length=256, trim_whitespace=False)
    user_type = serializers.ChoiceField(choices=UserType.choices, required=False)
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
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("A user with that username already exists.")
        return value

    def validate_email(self, value):
        return _unique_email(value)

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
        except IntegrityError:  # a concurrent registration took the name first
            raise serializers.ValidationError(
                {"username": ["A user with that username already exists."]}
            ) from None
        return user


# --- Profiles --------------------------------------------------------------------


class ProfileSerializer(serializers.ModelSerializer):
    """Another user's profile as anyone logged in may see it."""

    user = PublicUserSerializer(read_only=True)
    profile_picture_url = serializers.SerializerMethodField()
    profile_picture = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = ["id", "user", "user_type", "profile_picture_url", "profile_picture"]
        read_only_fields = fields

    def get_profile_picture_url(self, profile) -> str | None:
        path = profile.picture_path()
        request = self.context.get("request")
        return request.build_absolute_uri(path) if path and request else path

    get_profile_picture = get_profile_picture_url  # the app reads either key


class MyProfileSerializer(RejectUnknownFieldsMixin, ProfileSerializer):
    """The caller's own profile: adds the phone; user_type and phone are writable."""

    class Meta(ProfileSerializer.Meta):
        fields = ProfileSerializer.Meta.fields + ["phone"]
        read_only_fields = ["id", "user", "profile_picture_url", "profile_picture"]


class PictureUploadSerializer(serializers.Serializer):
    profile_picture = PictureField()
