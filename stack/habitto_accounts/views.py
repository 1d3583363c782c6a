"""Thin views of the accounts API; every answer goes out in the envelope (ok())."""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotFound, PermissionDenied
from rest_framework.filters import SearchFilter
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from habitto_chat.api.envelope import ok
from habitto_chat.conversations import parse_id
from habitto_chat.parsing import MAX_ID

from . import serializers, tokens
from .models import Profile
from .pagination import StrictPageNumberPagination
from .permissions import IsSelf, RegistrationOrAuthenticated
from .schema import answers, id_parameter, paging
from .throttling import (
    AccountLockout,
    LoginAddressThrottle,
    RefreshAddressThrottle,
    RegistrationAddressThrottle,
    clear_login_failures,
    record_login_failure,
)

User = get_user_model()


class TokenView(GenericAPIView):
    """Login and refresh: public, and deaf to any (possibly expired) Authorization header."""

    authentication_classes = []
    permission_classes = [AllowAny]
    success_message = "OK"

    def get_authenticate_header(self, request):
        # Without authenticators DRF would turn "wrong credentials" into a 403.
        return 'Bearer realm="api"'

    @extend_schema(responses=answers(200, serializers.TokenPairSerializer, 400, 401, 429))
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None
        return ok(serializer.validated_data, self.success_message)


class LoginView(TokenView):
    serializer_class = serializers.LoginSerializer
    success_message = "Logged in."
    throttle_classes = [LoginAddressThrottle, AccountLockout]

    @extend_schema(responses=answers(200, serializers.TokenPairSerializer, 400, 401, 429))
    def post(self, request):
        try:
            response = super().post(request)
        except AuthenticationFailed:
            record_login_failure(request)
            raise
        clear_login_failures(request)
        return response


class RefreshView(TokenView):
    serializer_class = serializers.RefreshSerializer
    success_message = "Token refreshed."
    throttle_classes = [RefreshAddressThrottle]


class LogoutView(GenericAPIView):
    """Revokes the access token presented (and the refresh token, when one is sent)."""

    serializer_class = serializers.LogoutSerializer
    permission_classes = [IsAuthenticated]

    def get_authenticators(self):
        # A token revoked by an earlier logout still identifies its user here (it must
        # still be our signature, unexpired, of an active user): logging out twice is a
        # 200, not a 401.
        authenticators = super().get_authenticators()
        for authenticator in authenticators:
            authenticator.refuse_revoked = False
        return authenticators

    @extend_schema(responses=answers(200, None, 400, 401))
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens.logout(request.user, request.auth, serializer.validated_data.get("refresh"))
        return ok(None, "Logged out.")


class UsersView(GenericAPIView):
    """GET: active users, public fields only. POST: registration (public)."""

    permission_classes = [RegistrationOrAuthenticated]
    throttle_classes = [RegistrationAddressThrottle]  # POST only
    pagination_class = StrictPageNumberPagination
    filter_backends = [SearchFilter]
    search_fields = ["username", "first_name", "last_name"]

    def get_queryset(self):
        return User.objects.filter(is_active=True).order_by("id")

    def get_serializer_class(self):
        if self.request.method == "POST":
            return serializers.RegistrationSerializer
        return serializers.PublicUserSerializer

    # `search` comes from SearchFilter
    @extend_schema(
        parameters=paging(), responses=answers(200, serializers.PublicUserSerializer, 400, 401, paged=True)
    )
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        data = self.get_serializer(page, many=True).data
        return ok(self.paginator.get_paginated_response(data).data)

    @extend_schema(responses=answers(201, serializers.MeSerializer, 400, 429))
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.save()
        return ok(serializers.MeSerializer(user).data, "Registered.", status.HTTP_201_CREATED)


class MeView(GenericAPIView):
    serializer_class = serializers.MeSerializer
    permission_classes = [IsSelf]

    def get_object(self):
        self.check_object_permissions(self.request, self.request.user)
        return self.request.user

    @extend_schema(responses=answers(200, serializers.MeSerializer, 401))
    def get(self, request):
        return ok(self.get_serializer(self.get_object()).data)

    @extend_schema(responses=answers(200, serializers.MeSerializer, 400, 401))
    def patch(self, request):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return ok(serializer.data, "Updated.")


class ProfilesView(GenericAPIView):
    """Profiles of active users, optionally of one user (`?user_id=`)."""

    serializer_class = serializers.ProfileSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = StrictPageNumberPagination

    def get_queryset(self):
        profiles = Profile.objects.filter(user__is_active=True).select_related("user").order_by("id")
        raw = self.request.query_params.get("user_id", "")
        return profiles.filter(user_id=parse_id(raw, "user_id")) if raw else profiles

    @extend_schema(
        operation_id="profiles_list",
        parameters=[id_parameter("user_id"), *paging()],
        responses=answers(200, serializers.ProfileSerializer, 400, 401, paged=True),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        data = self.get_serializer(page, many=True).data
        return ok(self.paginator.get_paginated_response(data).data)


class ProfileWriteMixin:
    """The one implementation of a profile change: JSON or multipart through
    ProfileUpdateSerializer, answered with the whole profile. PUT is partial too: the
    app sends PUT with only the fields it changes."""

    update_serializer_class = serializers.ProfileUpdateSerializer
    partial_update = True
    success_message = "Profile updated."

    def update_profile(self, request, profile):
        self.check_object_permissions(request, profile)
        changes = self.update_serializer_class(profile, data=request.data, partial=self.partial_update)
        changes.is_valid(raise_exception=True)
        changes.save()
        return ok(self.get_serializer(profile).data, self.success_message)


class MyProfileView(ProfileWriteMixin, GenericAPIView):
    """/profiles/me/ (GET, PATCH, PUT) and the app's /profiles/update_me/ (PATCH, PUT)."""

    serializer_class = serializers.ProfileSerializer
    permission_classes = [IsSelf]

    def get_object(self):
        # Users created before this app existed get their profile on first use.
        profile, _ = Profile.objects.select_related("user").get_or_create(user=self.request.user)
        return profile

    @extend_schema(responses=answers(200, serializers.ProfileSerializer, 401))
    def get(self, request):
        return ok(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=serializers.ProfileUpdateSerializer,
        responses=answers(200, serializers.ProfileSerializer, 400, 401),
    )
    def patch(self, request):
        return self.update_profile(request, self.get_object())

    put = patch


class MyPictureView(MyProfileView):
    """/profiles/me/picture/ and the app's /profiles/upload_profile_picture/ (POST multipart)."""

    update_serializer_class = serializers.PictureUploadSerializer
    partial_update = False  # the picture is required
    parser_classes = [MultiPartParser, FormParser]
    http_method_names = ["post", "options"]
    success_message = "Picture updated."

    @extend_schema(
        request=serializers.PictureUploadSerializer,
        responses=answers(200, serializers.ProfileSerializer, 400, 401, 415),
    )
    def post(self, request):
        return self.update_profile(request, self.get_object())


class ProfileDetailView(ProfileWriteMixin, GenericAPIView):
    """/profiles/<id>/: anyone logged in reads an active user's profile; only its owner
    changes it (JSON, or multipart with `profile_picture`)."""

    serializer_class = serializers.ProfileSerializer
    permission_classes = [IsAuthenticated]

    def get_object(self):
        profile_id = self.kwargs["profile_id"]
        profile = (
            Profile.objects.filter(pk=profile_id, user__is_active=True).select_related("user").first()
            if 0 < profile_id <= MAX_ID
            else None
        )
        if profile is None:
            raise NotFound("No such profile.")
        return profile

    @extend_schema(
        parameters=[id_parameter("profile_id", OpenApiParameter.PATH, required=True)],
        responses=answers(200, serializers.ProfileSerializer, 401, 404),
    )
    def get(self, request, profile_id):
        return ok(self.get_serializer(self.get_object()).data)

    @extend_schema(
        parameters=[id_parameter("profile_id", OpenApiParameter.PATH, required=True)],
        request=serializers.ProfileUpdateSerializer,
        responses=answers(200, serializers.ProfileSerializer, 400, 401, 403, 404),
    )
    def patch(self, request, profile_id):
        profile = self.get_object()
        if profile.user_id != request.user.pk:
            raise PermissionDenied("You can only change your own profile.")
        return self.update_profile(request, profile)

    put = patch
