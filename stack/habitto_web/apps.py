from django.apps import AppConfig


class HabittoWebConfig(AppConfig):
    name = "habitto_web"
    label = "habitto_web"
    verbose_name = "Habitto web client"
