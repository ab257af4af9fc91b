"""Web-side writes: demo users, patient portal invitations, protocol mappings, DRL values."""
from __future__ import annotations

import hashlib
import secrets
from datetime import date, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dosereg.access import roles
from dosereg.access.models import AssignedSite, SiteAssignment
from dosereg.protocols import naming, services as protocol_services
from dosereg.protocols.models import DRLSet, DRLValue, ProtocolMapping, StandardName
from dosereg.registry.models import DoseObject, Patient

from .models import PatientAccount

User = get_user_model()


# ---------------------------------------------------------------------------
# users and roles
# ---------------------------------------------------------------------------
def user_create(*, username: str, password: str, role: str, email: str = "", **extra):
    if role not in roles.ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    user, _ = User.objects.get_or_create(username=username, defaults={"email": email, **extra})
    user.set_password(password)
    if role == roles.ADMIN:
        user.is_staff = True
        user.is_superuser = True
    user.save()
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    return user


# the demo's second RSO reads this site only (one of the two sites of the builder's demo devices)
DEMO_RSO_SITE = "Riverside Clinic"


def demo_users_create() -> dict[str, tuple[str, str]]:
    """One demo user per role, plus a second RSO scoped to one site; the patient is linked (verified) to the
    first registry Patient.

    Returns {role: (username, password)} (the scoped RSO under "rso-site"). Idempotent: re-running resets the
    passwords. The first RSO has no site assignment, so sees every site while RSO_UNSCOPED_SEES_ALL is true.
    The patient entry is missing when the registry has no patient yet.
    """
    out: dict[str, tuple[str, str]] = {}
    for role in (roles.RSO, roles.PHYSICIST, roles.STAFF, roles.ADMIN):
        username, password = f"demo-{role}", f"demo-{role}-pass"
        user_create(username=username, password=password, role=role, email=f"{username}@dosereg.example")
        out[role] = (username, password)
    username, password = "demo-rso-riverside", "demo-rso-riverside-pass"
    site_assignment_set(user=user_create(username=username, password=password, role=roles.RSO,
                                         email=f"{username}@dosereg.example"),
                        sites=[DEMO_RSO_SITE], note="demo: one site")
    out["rso-site"] = (username, password)
    patient = Patient.objects.filter(merged_into__isnull=True).order_by("pk").first()
    if patient is not None:
        username, password = "demo-patient", "demo-patient-pass"
        user = user_create(username=username, password=password, role=roles.PATIENT)
        with transaction.atomic():
            PatientAccount.objects.filter(user=user).exclude(patient=patient).delete()
            if not PatientAccount.objects.filter(user=user, patient=patient).exists():
                PatientAccount.objects.create(
                    patient=patient, user=user, token_sha256=_sha(secrets.token_urlsafe(32)),
                    expires_at=timezone.now(), verified_at=timezone.now(),
                )
        out[roles.PATIENT] = (username, password)
    return out


def site_assignment_set(*, user, sites: list[str] | None = None, all_sites: bool = False, note: str = "") -> SiteAssignment:
    """Give ``user`` (an RSO) exactly these sites (``Device.institution`` names), or every site."""
    names = sorted({s.strip()[:256] for s in sites or [] if s and s.strip()})
    with transaction.atomic():
        assignment, _ = SiteAssignment.objects.update_or_create(user=user, defaults={"all_sites": all_sites, "note": note[:256]})
        assignment.sites.exclude(institution__in=names).delete()
        for name in names:
            AssignedSite.objects.get_or_create(assignment=assignment, institution=name)
    return assignment


# ---------------------------------------------------------------------------
# patient portal invitations
# ---------------------------------------------------------------------------
class InvitationError(Exception):
    pass


MAX_VERIFY_ATTEMPTS = 5


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def patient_invitation_issue(*, patient: Patient, issued_by) -> tuple[PatientAccount, str]:
    """A one-time invitation for the patient; returns (account, token). Only the token's hash is stored."""
    if patient.merged_into_id:
        raise InvitationError("this record was merged into another patient; invite from the surviving record")
    if patient.birth_date is None:
        raise InvitationError("the patient record has no birth date, which the verification step needs")
    token = secrets.token_urlsafe(32)
    acc = PatientAccount.objects.create(
        patient=patient, token_sha256=_sha(token), invited_by=issued_by,
        expires_at=timezone.now() + timedelta(days=settings.DOSEREG_PORTAL_INVITE_DAYS),
    )
    return acc, token


def patient_invitation_get(*, token: str) -> PatientAccount | None:
    acc = PatientAccount.objects.select_related("patient").filter(token_sha256=_sha(token)).first()
    if acc is None or acc.revoked or acc.user_id or acc.expires_at < timezone.now():
        return None
    if acc.failed_attempts >= MAX_VERIFY_ATTEMPTS:
        return None
    return acc


def _birth_matches(patient: Patient, birth_date: date) -> bool:
    if patient.birth_date is None:
        return False
    if patient.pseudonymised:  # pseudonymised records keep the birth year only
        return patient.birth_date.year == birth_date.year
    return patient.birth_date == birth_date


def patient_invitation_accept(*, token: str, birth_date: date, username: str, password: str):
    """Verify the birth date and create the portal user. Raises InvitationError (generic messages).

    A wrong birth date is counted (outside the transaction, so the count survives the
    refusal); after MAX_VERIFY_ATTEMPTS the invitation is locked.
    """
    from django.contrib.auth.password_validation import validate_password
    from django.db.models import F

    mismatch_pk = None
    with transaction.atomic():
        acc = PatientAccount.objects.select_for_update().select_related("patient").filter(token_sha256=_sha(token)).first()
        if acc is None or acc.revoked or acc.user_id or acc.expires_at < timezone.now() or acc.failed_attempts >= MAX_VERIFY_ATTEMPTS:
            raise InvitationError("this invitation link is not valid any more; ask the hospital for a new one")
        if not _birth_matches(acc.patient, birth_date):
            mismatch_pk, failed = acc.pk, acc.failed_attempts + 1
        else:
            if User.objects.filter(username__iexact=username).exists():
                raise InvitationError("that username is taken; choose another")
            try:
                validate_password(password, user=User(username=username))
            except ValidationError as exc:
                raise InvitationError(" ".join(exc.messages)) from exc
            user = user_create(username=username, password=password, role=roles.PATIENT)
            acc.user = user
            acc.verified_at = timezone.now()
            acc.save(update_fields=["user", "verified_at"])
            return user
    PatientAccount.objects.filter(pk=mismatch_pk).update(failed_attempts=F("failed_attempts") + 1)
    left = MAX_VERIFY_ATTEMPTS - failed
    raise InvitationError(
        "the details do not match our record" + (f" ({left} attempts left)" if left > 0 else "; the link is now locked")
    )


def patient_account_revoke(*, account: PatientAccount) -> None:
    account.revoked = True
    account.save(update_fields=["revoked"])
    if account.user_id:
        user = account.user
        assert user is not None  # user_id is set
        user.is_active = False
        user.save(update_fields=["is_active"])


# ---------------------------------------------------------------------------
# protocol mapping and DRLs
# ---------------------------------------------------------------------------
def suggestion_for(source_name: str, modality: str, standards: list[StandardName]) -> naming.Suggestion | None:
    """The standard name to suggest for a vendor name, with its confidence (``dosereg.protocols.naming``: same
    modality family, body region and clinical intent only; None rather than a guess across them)."""
    return naming.suggest(source_name, modality, [(s, s.name, s.modality) for s in standards])


def suggest_standard_name(source_name: str, modality: str, standards: list[StandardName]) -> StandardName | None:
    s = suggestion_for(source_name, modality, standards)
    return s.key if s else None  # type: ignore[return-value]


def mapping_warnings(source_name: str, standard_name: StandardName) -> list[str]:
    """Why a chosen standard name may be another examination than the vendor name (shown before confirming)."""
    return naming.compatibility(source_name, standard_name.name)


def protocol_mappings_apply(*, items: list[tuple[str, str]], standard_name: StandardName | None, user=None) -> list[dict]:
    """Map (or unmap) several (modality, vendor name) at once, in one transaction; returns what changed
    (modality, source name, previous and new standard name) for the audit trail."""
    changes = []
    with transaction.atomic():
        previous = {(m.modality, m.source_name): m.standard_name.name for m in ProtocolMapping.objects.select_related(
            "standard_name").filter(source_name__in=[n for _, n in items])}
        for modality, source_name in items:
            before = previous.get((modality, source_name))
            protocol_mapping_set(modality=modality, source_name=source_name, standard_name=standard_name, user=user,
                                 refresh_studies=False)
            after = standard_name.name if standard_name else None
            if before != after:
                changes.append({"modality": modality, "source_name": source_name, "previous": before, "new": after,
                                "standard_name_id": standard_name.pk if standard_name else None})
        protocol_services.study_standard_names_refresh(pairs=items)
    return changes


def protocol_mapping_set(*, modality: str, source_name: str, standard_name: StandardName | None, user=None,
                         refresh_studies: bool = True) -> ProtocolMapping | None:
    """Map (or unmap, with standard_name None) one vendor name; the studies of that name take the new standard
    name (``Study.standard_name``) in the same transaction (``refresh_studies=False``: the caller does it)."""
    with transaction.atomic():
        if standard_name is None:
            ProtocolMapping.objects.filter(modality=modality, source_name=source_name).delete()
            m = None
        else:
            m, _ = ProtocolMapping.objects.update_or_create(
                modality=modality, source_name=source_name, defaults={"standard_name": standard_name, "updated_by": user}
            )
        if refresh_studies:
            protocol_services.study_standard_names_refresh(pairs=[(modality, source_name)])
    return m


def standard_name_create(*, name: str, modality: str) -> StandardName:
    name = name.strip()
    if not name:
        raise ValidationError("a standard name is required")
    return StandardName.objects.get_or_create(name=name[:128], modality=modality.strip().upper()[:8])[0]


def drl_value_set(*, drl_set: DRLSet, standard_name: StandardName, quantity: str, value: float | None,
                  exam_label: str = "", notes: str = "") -> DRLValue | None:
    if quantity not in dict(DRLValue.QUANTITIES):
        raise ValidationError(f"unknown quantity {quantity}")
    if value is None:
        DRLValue.objects.filter(drl_set=drl_set, standard_name=standard_name, quantity=quantity).delete()
        return None
    if value <= 0:
        raise ValidationError("a reference level must be positive")
    v, _ = DRLValue.objects.update_or_create(
        drl_set=drl_set, standard_name=standard_name, quantity=quantity,
        defaults={"value": value, "exam_label": exam_label, "notes": notes},
    )
    return v


def drl_set_create(*, name: str, citation: str, country: str = "", year: int | None = None, url: str = "") -> DRLSet:
    if not citation.strip():
        raise ValidationError("a DRL set needs its citation")
    if DRLSet.objects.filter(name=name.strip()[:128]).exists():
        raise ValidationError("a DRL set with this name exists")
    return DRLSet.objects.create(name=name.strip()[:128], citation=citation.strip(), country=country[:32], year=year, url=url)


# ---------------------------------------------------------------------------
# quarantine
# ---------------------------------------------------------------------------
def quarantine_reprocess(*, ids: list[int] | None = None, scope=None) -> int:
    """Re-extract quarantined objects (all, or the given ids) through the registry service.

    ``scope`` (a ``SiteScope``): only objects of devices at its sites (what the user's dashboard lists)."""
    from dosereg.registry.reprocess import dose_objects_reprocess

    qs = DoseObject.objects.filter(status=DoseObject.STATUS_QUARANTINED)
    if scope is not None:
        qs = qs.filter(scope.device_q())
    if ids:
        qs = qs.filter(pk__in=ids)
    return dose_objects_reprocess(queryset=qs)
