"""The app's push registration, under /api/v1/me/devices/ (members.services.devices).

The app registers its token at every start (the push SDK may have rotated it); the answer is
the same device for the same token. A member has at most DEVICES_PER_MEMBER active devices,
so the list needs no pages.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from members.api_me import ErrorSerializer, MemberApiView
from members.authentication import request_member
from members.models import Device
from members.services.devices import device_register, device_remove


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "platform", "app", "created_at", "last_seen_at"]


class DeviceRegisterSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(Device.Platform.choices)
    token = serializers.CharField(
        max_length=8192,
        help_text="fcm, hms: the registration token; apns: the device token in 64 hex digits; "
                  "webpush: the JSON text of PushSubscription.toJSON() (https endpoint, keys "
                  "p256dh and auth in base64url).")
    app = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                help_text="The app's id or bundle id.")


class DeviceListView(MemberApiView):
    @extend_schema(responses=DeviceSerializer(many=True),
                   description="The member's active push devices, most recently seen first.")
    def get(self, request: Request) -> Response:
        devices = (Device.objects.filter(member=request_member(request), is_active=True)
                   .order_by("-last_seen_at", "-pk"))
        return Response(DeviceSerializer(devices, many=True).data)

    @extend_schema(
        request=DeviceRegisterSerializer,
        responses={201: DeviceSerializer, 200: DeviceSerializer},
        description="Register this install's push token: 201 for a new token, 200 for one "
                    "already known, which is then this member's (a token registered by another "
                    "member moves here: the phone changed hands). A malformed token is a 400 "
                    "naming `token`.")
    def post(self, request: Request) -> Response:
        body = DeviceRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            device, created = device_register(member=request_member(request),
                                              platform=data["platform"], token=data["token"],
                                              app=data.get("app", ""))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return Response(DeviceSerializer(device).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DeviceDetailView(MemberApiView):
    @extend_schema(responses={204: None, 404: ErrorSerializer},
                   description="Stop pushes to one of the member's devices (sign-out in the "
                               "app, notifications turned off).")
    def delete(self, request: Request, device_id: int) -> Response:
        if not device_remove(member=request_member(request), device_id=device_id):
            return Response({"code": "not_found", "detail": "no such device"},
                            status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
