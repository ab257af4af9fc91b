"""REST API (DRF): token or session auth, the same roles and patient scoping as the pages.

Patients read only their own studies/events/patient record; anything else is 404.
Every read of patient data is audited (one row per patient on the page).
Query parameters are read through ``params.QueryParams(strict=True)``: a malformed value is a 400
naming the parameter (``{"until": "'2025-02-30' is not a valid date or time"}``), never a 500.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

from django.contrib.auth import authenticate
from django.db import models
from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework import generics, permissions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from dosereg import formatting as fmt
from dosereg.access import roles
from dosereg.access.roles import has_role, user_roles
from dosereg.access.scope import EVERY_SITE, SiteScope, scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record, client_ip
from dosereg.registry.merge_group import patient_group_ids
from dosereg.registry.models import DoseObject, IrradiationEvent, Participant, Patient, PlaneTotal, Study

from dosereg.skindose import selectors as skin_selectors

from . import fhir, integrations, tokens
from .params import InvalidParameter, QueryParams, parse_datetime, parse_int
from .selectors import patient_for_user, received_identity_values


# ---------------------------------------------------------------------------
# permissions and scoping
# ---------------------------------------------------------------------------
class BadParamsAre400:
    """Mixin for every API view: ``InvalidParameter`` (from ``params``) -> 400 ``{"<parameter>": "<problem>"}``."""

    request: Request  # set by the DRF view it is mixed into

    def params(self) -> QueryParams:
        return QueryParams(self.request.query_params, strict=True)

    def handle_exception(self, exc):
        if isinstance(exc, InvalidParameter):
            exc = serializers.ValidationError(exc.as_dict())
        return super().handle_exception(exc)


class RolePermission(permissions.BasePermission):
    """The view's ``allowed_roles``; patients additionally need a verified account."""

    def has_permission(self, request, view):
        user = request.user
        if not user or not user.is_authenticated:
            return False
        return has_role(user, getattr(view, "allowed_roles", ()))


class PatientScoped:
    """``patient_ids`` is None for clinical roles (all), the patient's own ids for a portal user.

    ``site_scope`` is the clinical user's sites (``dosereg.access.scope``: a site-scoped RSO reads only studies,
    events, patients and alerts at their sites, anything else is a 404 as for a missing id); a portal user is
    limited by ``patient_ids`` instead."""

    request: Request  # set by the DRF view it is mixed into

    def site_scope(self) -> SiteScope:
        if has_role(self.request.user, roles.CLINICAL):
            return scope_for(self.request.user)
        return EVERY_SITE

    def patient_ids(self) -> list[int] | None:
        if has_role(self.request.user, roles.CLINICAL):
            return None
        patient = patient_for_user(self.request.user)
        if patient is None:
            return []
        return patient_group_ids(patient.pk)


class Pagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = "-id"


def _audit_page(request, object_type: str, patient_pks, detail=None):
    audit_record(request=request, action=AuditEvent.ACTION_API_READ, object_type=object_type,
                 object_id=str(request.parser_context.get("kwargs", {}).get("pk", "list")) if hasattr(request, "parser_context") else "",
                 patient_pks=patient_pks, detail=detail or {})


# ---------------------------------------------------------------------------
# serializers
# ---------------------------------------------------------------------------
class MachineFloatField(serializers.FloatField):
    """A number in the unit named by the field, without float noise (``dosereg.formatting.machine``)."""

    def to_representation(self, value):
        return fmt.machine(super().to_representation(value))


class DoseModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping, models.FloatField: MachineFloatField}


class PatientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "patient_id", "issuer", "name", "sex", "birth_date", "pseudonymised", "merged_into"]


class StudySerializer(DoseModelSerializer):
    device = serializers.StringRelatedField()
    pregnancy_status = serializers.CharField(source="effective_pregnancy_status")
    received_identity = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id", "study_instance_uid", "patient", "device", "device_id", "received_identity", "study_datetime",
            "accession_number", "study_description",
            "procedure_modality", "pregnancy_status", "patient_weight_kg", "patient_age_years", "dap_total_gy_cm2",
            "dose_rp_max_plane_gy", "fluoro_time_total_s", "dlp_total_mgy_cm", "ctdivol_max_mgy", "event_count",
            "has_ionising_dose", "not_patient_reason",
        ]

    def get_received_identity(self, study: Study) -> dict | None:
        """The device identity as the study's reports carried it (clinical roles; null for a patient): manufacturer,
        model, serial, station, observer UID, Software Versions and calling AE titles (``selectors``)."""
        objects = getattr(study, "received_objects", None)
        if objects is None:  # not loaded for this reader (a patient): not shown
            return None
        if study.received_identity_id is None:
            return None
        return received_identity_values(study, objects)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if getattr(instance, "received_objects", None) is None:
            data.pop("received_identity", None)
        return data


def _with_received_identity(qs, request):
    """Clinical readers get each study's identity as received: the identity row joined here, the reports' calling AE
    and Software Versions attached by ``_attach_received_objects`` (one query for the page; a patient gets neither)."""
    if not has_role(request.user, roles.CLINICAL):
        return qs
    return qs.select_related("received_identity")


class _Received(NamedTuple):
    status: str
    calling_ae: str
    software_versions: str | None


def _attach_received_objects(studies, request) -> None:
    """Each study's reports as ``received_objects`` (status, calling AE, Software Versions, in order received): one
    plain-values query for the page's studies, no model instances (a page of 1,000 studies has 2,000 or more)."""
    studies = [s for s in studies if s is not None]
    if not studies or not has_role(request.user, roles.CLINICAL):
        return
    by_study: dict[int, list[_Received]] = {s.pk: [] for s in studies}
    for sid, st, ae, sw in (DoseObject.objects.filter(study_id__in=list(by_study)).order_by("received_at", "pk")
                                .values_list("study_id", "status", "calling_ae", "software_versions")):
        by_study[sid].append(_Received(st, ae, sw))
    for s in studies:
        setattr(s, "received_objects", by_study[s.pk])  # read by StudySerializer


class EventSerializer(DoseModelSerializer):
    class Meta:
        model = IrradiationEvent
        exclude = ["dose_object", "extra"]


# ---------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------
class StudyList(BadParamsAre400, PatientScoped, generics.ListAPIView):
    """Studies. Filters: patient, modality, device, since, until (ISO dates)."""

    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]
    serializer_class = StudySerializer
    pagination_class = Pagination

    def get_queryset(self):
        qs = _with_received_identity(Study.objects.select_related("device").filter(self.site_scope().study_q()),
                                     self.request)
        ids = self.patient_ids()
        if ids is not None:
            qs = qs.filter(patient_id__in=ids)
        p = self.params()
        pid = p.int("patient")
        if pid is not None:
            qs = qs.filter(patient_id__in=[pid, *Patient.objects.filter(merged_into_id=pid).values_list("pk", flat=True)])
        modality = p.text("modality", max_length=16).upper()
        if modality:
            qs = qs.filter(procedure_modality=modality)
        device = p.int("device")
        if device is not None:
            qs = qs.filter(device_id=device)
        since, until = p.datetime("since"), p.datetime("until")
        if since is not None:
            qs = qs.filter(study_datetime__gte=since)
        if until is not None:
            qs = qs.filter(study_datetime__lt=until)
        return qs

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        _attach_received_objects(page or [], self.request)
        return page

    def list(self, request, *args, **kwargs):
        resp = super().list(request, *args, **kwargs)
        _audit_page(request, "study", {r["patient"] for r in resp.data["results"]})
        return resp


class StudyDetail(BadParamsAre400, PatientScoped, generics.RetrieveAPIView):
    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]
    serializer_class = StudySerializer

    def get_queryset(self):
        qs = _with_received_identity(Study.objects.select_related("device").filter(self.site_scope().study_q()),
                                     self.request)
        ids = self.patient_ids()
        return qs if ids is None else qs.filter(patient_id__in=ids)

    def get_object(self):
        study = super().get_object()
        _attach_received_objects([study], self.request)
        return study

    def retrieve(self, request, *args, **kwargs):
        resp = super().retrieve(request, *args, **kwargs)
        # mammography AGD per breast and the NM/PET part (administrations; never added to the CT part), issue 16
        from dosereg.registry.selectors import study_breast_agd, study_nm_administrations

        resp.data["agd_per_breast_mgy"] = study_breast_agd(resp.data["id"])
        resp.data["radiopharmaceutical_administrations"] = study_nm_administrations(resp.data["id"])
        # the peak skin dose estimate of a fluoroscopically guided study (issue 15), with its method and caveats
        from dosereg.skindose.selectors import study_skin_dose_summary

        resp.data["skin_dose"] = study_skin_dose_summary(resp.data["id"])
        _audit_page(request, "study", [resp.data["patient"]])
        return resp


class EventList(BadParamsAre400, PatientScoped, generics.ListAPIView):
    """Irradiation events, all or of one study (``/studies/<pk>/events/`` or ``?study=``)."""

    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]
    serializer_class = EventSerializer
    pagination_class = Pagination

    def get_queryset(self):
        scope = self.site_scope()
        qs = IrradiationEvent.objects.filter(scope.study_q("study__"))
        ids = self.patient_ids()
        study_pk = self.kwargs.get("pk") or self.params().int("study")
        if study_pk is not None:
            sq = Study.objects.filter(scope.study_q(), pk=study_pk)
            if ids is not None:
                sq = sq.filter(patient_id__in=ids)
            if not sq.exists():
                raise Http404
            qs = qs.filter(study_id=study_pk)
        elif ids is not None:
            qs = qs.filter(study__patient_id__in=ids)
        return qs

    def list(self, request, *args, **kwargs):
        resp = super().list(request, *args, **kwargs)
        study_ids = {r["study"] for r in resp.data["results"]}
        pks = set(Study.objects.filter(pk__in=study_ids).values_list("patient_id", flat=True)) if study_ids else set()
        _audit_page(request, "event", pks, {"studies": sorted(study_ids)[:100]})
        return resp


class PatientList(BadParamsAre400, PatientScoped, generics.ListAPIView):
    """Patients (clinical roles: all, ``?q=`` searches the ID; patients: their own record only)."""

    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]
    serializer_class = PatientSerializer
    pagination_class = Pagination

    def get_queryset(self):
        qs = Patient.objects.filter(self.site_scope().patient_q())
        ids = self.patient_ids()
        if ids is not None:
            return qs.filter(pk__in=ids[:1])
        q = self.params().text("q", max_length=128)
        if q:
            qs = qs.filter(patient_id__istartswith=q)
        return qs

    def list(self, request, *args, **kwargs):
        resp = super().list(request, *args, **kwargs)
        _audit_page(request, "patient", {r["id"] for r in resp.data["results"]})
        return resp


class PatientDetail(BadParamsAre400, PatientScoped, generics.RetrieveAPIView):
    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]
    serializer_class = PatientSerializer

    def get_queryset(self):
        ids = self.patient_ids()
        qs = Patient.objects.filter(self.site_scope().patient_q())
        return qs if ids is None else qs.filter(pk__in=ids)

    def retrieve(self, request, *args, **kwargs):
        resp = super().retrieve(request, *args, **kwargs)
        _audit_page(request, "patient", [resp.data["id"]])
        return resp


class AlertList(BadParamsAre400, APIView):
    """Alerts from the exposure app (open by default; ``?status=`` filters)."""

    allowed_roles = roles.DASHBOARD
    permission_classes = [RolePermission]

    def get(self, request):
        p = self.params()
        size = p.int("page_size", max_value=Pagination.max_page_size) or Pagination.page_size
        alerts = integrations.alerts_api_list(status=p.text("status", max_length=64) or "open", patient=p.int("patient"),
                                              limit=size + 1, before_id=p.int("cursor"), scope=scope_for(request.user))
        next_url = None
        if len(alerts) > size:  # a further page: keyset on the id, stable while new alerts arrive
            alerts = alerts[:size]
            query = request.query_params.copy()
            query["cursor"] = str(alerts[-1]["id"])
            next_url = request.build_absolute_uri(request.path + "?" + query.urlencode())
        _audit_page(request, "alert", {a.get("patient_pk") for a in alerts})
        return Response({"next": next_url, "results": alerts, "available": integrations.has_exposure()})


class AlertAction(BadParamsAre400, APIView):
    allowed_roles = roles.ALERT_ACTIONS
    permission_classes = [RolePermission]

    def post(self, request, pk: int, action: str):
        if action not in integrations.ALERT_ACTIONS:
            raise Http404
        if not hasattr(request.data, "get"):
            return Response({"detail": "a JSON object or form body is required"}, status=status.HTTP_400_BAD_REQUEST)
        try:
            result = integrations.alert_transition(alert_id=pk, action=action, user=request.user,
                                                   note=str(request.data.get("note", ""))[:2000],
                                                   due=str(request.data.get("due", "")), scope=scope_for(request.user))
        except integrations.AlertNotFound:
            raise Http404
        except ValueError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="alert", object_id=pk,
                     patient_pks=[result.get("patient_pk")], detail={"action": action, "via": "api"})
        return Response(result)


def _fhir_for(studies: list[Study], request) -> list[dict]:
    ids = [s.pk for s in studies]
    planes: dict[int, list[PlaneTotal]] = {}
    for p in PlaneTotal.objects.filter(study_id__in=ids, dose_object__superseded_by__isnull=True,
                                       dose_object__status=DoseObject.STATUS_INGESTED):
        planes.setdefault(p.study_id, []).append(p)
    sops: dict[int, list[str]] = {}
    for sid, uid in DoseObject.objects.filter(study_id__in=ids, status=DoseObject.STATUS_INGESTED,
                                              superseded_by__isnull=True).values_list("study_id", "sop_instance_uid"):
        sops.setdefault(sid, []).append(uid)
    auth: dict[int, str] = {}
    for sid, name in Participant.objects.filter(study_id__in=ids, role="irradiation_authorizing").values_list("study_id", "name"):
        auth.setdefault(sid, name)
    return [fhir.observation(s, planes=planes.get(s.pk), sop_uids=sops.get(s.pk), authorizing=auth.get(s.pk, ""))
            for s in studies]


def _fhir_skin_for(studies: list[Study]) -> list[dict]:
    """The peak skin dose Observations of these studies (those with a skin-dose result): one query."""
    skin = skin_selectors.studies_skin_dose_summaries([s.pk for s in studies])
    return [fhir.skin_observation(s, skin[s.pk]) for s in studies if s.pk in skin]


class FhirObservation(BadParamsAre400, PatientScoped, APIView):
    """GET fhir/Observation/dose-summary-<study pk>: one RadiationDoseSummary;
    fhir/Observation/peak-skin-dose-<study pk>: the study's peak skin dose estimate (or why there is none)."""

    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]

    def get(self, request, obs_id: str):
        prefix = next((p for p in ("dose-summary-", fhir.SKIN_ID_PREFIX) if obs_id.startswith(p)), "")
        try:
            study_pk = parse_int(obs_id[len(prefix):], "id") if prefix else None
        except InvalidParameter:
            study_pk = None
        if study_pk is None:  # not one of ours, or an id that cannot exist
            raise Http404
        qs = Study.objects.select_related("device").filter(self.site_scope().study_q())
        ids = self.patient_ids()
        if ids is not None:
            qs = qs.filter(patient_id__in=ids)
        study = get_object_or_404(qs, pk=study_pk)
        _audit_page(request, "fhir_observation", [study.patient_id], {"study": study.pk})
        if prefix == fhir.SKIN_ID_PREFIX:
            found = _fhir_skin_for([study])
            if not found:  # not fluoroscopically guided: no skin-dose result
                raise Http404
            return Response(found[0], content_type="application/fhir+json")
        return Response(_fhir_for([study], request)[0], content_type="application/fhir+json")


class FhirObservationSearch(BadParamsAre400, PatientScoped, APIView):
    """GET fhir/Observation?code=73569-6&patient=<pk>&date=ge2020-01-01 -> searchset Bundle (max 500)."""

    allowed_roles = (*roles.CLINICAL, roles.PATIENT)
    permission_classes = [RolePermission]

    def get(self, request):
        p = request.query_params
        code = (p.get("code") or "73569-6").split("|")[-1]
        if code != "73569-6":
            return Response(fhir.bundle([]), content_type="application/fhir+json")
        qs = Study.objects.select_related("device").filter(self.site_scope().study_q()).order_by("study_datetime", "pk")
        ids = self.patient_ids()
        if ids is not None:
            qs = qs.filter(patient_id__in=ids)
        name = "patient" if p.get("patient") else "subject"
        patient = p.get(name)
        if patient:
            try:
                patient_pk = parse_int(patient.split("/")[-1], name)
            except InvalidParameter:
                raise InvalidParameter(name, "Patient/<id> or <id>") from None
            qs = qs.filter(patient_id=patient_pk)
        elif ids is None:
            raise InvalidParameter("patient", "required")
        for d in p.getlist("date"):
            prefix, value = (d[:2], d[2:]) if d[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", d)
            when = parse_datetime(value, "date")
            if when is None:
                raise InvalidParameter("date", "a date is required after the prefix")
            lookup = {"ge": "gte", "gt": "gt", "le": "lte", "lt": "lt", "eq": "date"}[prefix]
            qs = qs.filter(**{f"study_datetime__{lookup}": when.date() if lookup == "date" else when})
        studies = list(qs[:500])
        _audit_page(request, "fhir_observation", {s.patient_id for s in studies})
        base = request.build_absolute_uri("/api/v1/fhir/")
        return Response(fhir.bundle(_fhir_for(studies, request), base_url=base, included=_fhir_skin_for(studies)),
                        content_type="application/fhir+json")


class LoginThrottle(AnonRateThrottle):
    """20 tries a minute per user name and client address (the trusted proxy hop, ``client_ip``): a flood
    for one name or from one address never throttles another user signing in behind the same proxy."""

    rate = "20/min"

    def get_cache_key(self, request, view):
        name = str(request.data.get("username", ""))[:150] if hasattr(request.data, "get") else ""
        ident = hashlib.sha256(f"{client_ip(request) or '-'}\0{name}".encode("utf-8", "replace")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ObtainToken(APIView):
    """POST username + password -> {"token": ...}. Same lockout as the login page."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [LoginThrottle]

    def post(self, request):
        from .views import login_locked

        if not hasattr(request.data, "get"):
            return Response({"detail": "a JSON object or form body is required"}, status=status.HTTP_400_BAD_REQUEST)
        username = str(request.data.get("username", ""))[:150]
        password = str(request.data.get("password", ""))
        if "\x00" in username or "\x00" in password:  # no account has one; PostgreSQL cannot even compare it
            return Response({"detail": "invalid credentials"}, status=status.HTTP_400_BAD_REQUEST)
        if login_locked(request, username):
            return Response({"detail": "too many failed logins; try later"}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        user = authenticate(request._request, username=username, password=password)
        if user is None or not user.is_active:
            return Response({"detail": "invalid credentials"}, status=status.HTTP_400_BAD_REQUEST)
        token, expires = tokens.token_issue(user)
        audit_record(request=request, action=AuditEvent.ACTION_LOGIN, object_type="api_token", object_id=user.pk, user=user)
        return Response({"token": token.key, "roles": sorted(user_roles(user)), "expires": expires.isoformat()})
