"""Thin views of the accounts API; every answer goes out in the envelope (ok())."""

from django.contrib.auth import get_user_model
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.filters import SearchFilter
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from habitto_chat.api.envelope import ok
from habitto_chat.conversations import parse_id

from . import serializers, tokens
from .models import Profile
from .pagination import StrictPageNumberPagination
from .permissions import IsSelf, RegistrationOrAuthenticated
from .pictures import replace_picture
from .throttling import (
    AccountLockout,
    LoginAddressThrottle,
    RefreshAddressThrottle,
    RegistrationAddressThrottle,
    clear_login_failures,
    record_login_failure,
)

User = get_user_model()
PAGING = [OpenApiParameter("page", int), OpenApiParameter("page_size", int)]


class TokenView(GenericAPIView):
    """Login and refresh: public, and deaf to any (possibly expired) Authorization header."""

    authentication_classes = []
    permission_classes = [AllowAny]
    success_message = "OK"

    def get_authenticate_header(self, request):
        # Without authenticators DRF would turn "wrong credentials" into a 403.
        return 'Bearer realm="api"'

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
    serializer_class = serializers.LogoutSerializer
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: None})
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens.logout(request.user, request.auth, serializer.validated_data["refresh"])
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

    @extend_schema(parameters=PAGING)  # `search` comes from SearchFilter
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        data = self.get_serializer(page, many=True).data
        return ok(self.paginator.get_paginated_response(data).data)

    @extend_schema(responses={201: serializers.MeSerializer})
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

    def get(self, request):
        return ok(self.get_serializer(self.get_object()).data)

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

    @extend_schema(parameters=[OpenApiParameter("user_id", int), *PAGING])
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        data = self.get_serializer(page, many=True).data
        return ok(self.paginator.get_paginated_response(data).data)


class MyProfileMixin:
    permission_classes = [IsSelf]

    def get_object(self):
        # Users created before this app existed get their profile on first use.
        profile, _ = Profile.objects.select_related("user").get_or_create(user=self.request.user)
        self.check_object_permissions(self.request, profile)
        return profile


class MyProfileView(MyProfileMixin, GenericAPIView):
    serializer_class = serializers.MyProfileSerializer

    def get(self, request):
        return ok(self.get_serializer(self.get_object()).data)

    def patch(self, request):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return ok(serializer.data, "Updated.")


class MyPictureView(MyProfileMixin, GenericAPIView):
    serializer_class = serializers.PictureUploadSerializer
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=serializers.MyProfileSerializer)
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            profile = self.get_object()
            replace_picture(profile, serializer.validated_data["profile_picture"])
        data = serializers.MyProfileSerializer(profile, context=self.get_serializer_context()).data
        return ok(data, "Picture updated.")
