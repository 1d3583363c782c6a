"""Accounts routes, mounted at /api/ by the standalone server. The shipped app's paths
(update_me, upload_profile_picture, profiles/<id>/) and this server's own (/me/,
/me/picture/) lead to the same views."""

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("refresh/", views.RefreshView.as_view(), name="refresh"),
    path("token/refresh/", views.RefreshView.as_view(), name="token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("users/", views.UsersView.as_view(), name="users"),
    path("users/me/", views.MeView.as_view(), name="me"),
    path("profiles/", views.ProfilesView.as_view(), name="profiles"),
    path("profiles/me/", views.MyProfileView.as_view(), name="my-profile"),
    path(
        "profiles/update_me/",
        views.MyProfileView.as_view(http_method_names=["patch", "put", "options"]),
        name="update-my-profile",
    ),
    path("profiles/me/picture/", views.MyPictureView.as_view(), name="my-picture"),
    path("profiles/upload_profile_picture/", views.MyPictureView.as_view(), name="upload-my-picture"),
    path("profiles/<int:profile_id>/", views.ProfileDetailView.as_view(), name="profile"),
]
