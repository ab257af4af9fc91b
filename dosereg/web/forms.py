from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from dosereg.protocols.models import DRLSet, DRLValue, StandardName


class LoginForm(AuthenticationForm):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}))


class InvitationAcceptForm(forms.Form):
    birth_date = forms.DateField(label="Your date of birth", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                                 input_formats=["%Y-%m-%d", "%d/%m/%Y"],
                                 help_text="As registered at the hospital.")
    username = forms.CharField(max_length=150, label="Choose a username")
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), label="Choose a password")
    password2 = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), label="Repeat the password")

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password2"):
            raise forms.ValidationError("the two passwords differ")
        return data


class AuditRangeForm(forms.Form):
    MODALITY_CHOICES = [("", "all modalities"), ("CT", "CT"), ("RF", "RF"), ("XA", "XA"), ("DX", "DX"), ("MG", "MG")]
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    modality = forms.ChoiceField(required=False, choices=MODALITY_CHOICES)
    device = forms.IntegerField(required=False, widget=forms.HiddenInput)


class MappingForm(forms.Form):
    modality = forms.CharField(max_length=8)
    source_name = forms.CharField(max_length=256, required=False)
    standard_name = forms.ModelChoiceField(queryset=StandardName.objects.all(), required=False)
    new_standard_name = forms.CharField(max_length=128, required=False)


class DRLValueForm(forms.Form):
    drl_set = forms.ModelChoiceField(queryset=DRLSet.objects.all())
    standard_name = forms.ModelChoiceField(queryset=StandardName.objects.all())
    quantity = forms.ChoiceField(choices=DRLValue.QUANTITIES)
    value = forms.FloatField(required=False, min_value=0)
    exam_label = forms.CharField(max_length=128, required=False)


class DRLSetForm(forms.Form):
    name = forms.CharField(max_length=128)
    country = forms.CharField(max_length=32, required=False)
    year = forms.IntegerField(required=False, min_value=1950, max_value=2100)
    citation = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    url = forms.URLField(required=False, assume_scheme="https")
