from django import template

register = template.Library()

ACTION_LABEL = {
    "raised": "Case opened", "escalated": "Escalated", "level_added": "Level added", "notified": "E-mailed",
    "not_notified": "Not e-mailed", "acknowledged": "Acknowledged", "follow_up": "Follow-up scheduled", "closed": "Closed",
    "reopened": "Reopened", "withdrawn": "Withdrawn", "backfilled": "Built from earlier alerts",
    "follow_up_reminder": "Follow-up reminder e-mailed", "incident_declared": "Incident declared",
    "incident_note": "Investigation note", "physicist_sign_off": "Physicist sign-off", "regulator_reference": "Reported to the regulator",
}
OUTCOME_LABEL = {
    "skin_reaction": "Skin reaction", "skin_grade": "Grade", "skin_grade_source": "Grading", "psd_gy": "Peak skin dose estimate (Gy)",
    "conceptus_dose_mgy": "Conceptus dose estimate (mGy)", "conceptus_method": "Method", "conceptus_band": "Band",
    "dose_check_review": "Proceeding", "staff_finding": "Finding",
}
VALUE_LABEL = {"none": "none observed", "observed": "observed", "not_assessed": "not assessed", "not_applicable": "not applicable",
               "justified": "justified", "not_justified": "not justified", "protocol_review": "protocol to be reviewed",
               "physicist_calculation": "physicist calculation", "monte_carlo": "Monte Carlo / software",
               "measurement": "phantom measurement", "published_estimate": "published estimate", "other": "other"}


@register.filter
def action_label(value):
    return ACTION_LABEL.get(value, str(value).replace("_", " "))


@register.filter
def outcome_items(outcome):
    order = list(OUTCOME_LABEL)  # the form's order (a JSON column does not keep it)
    items = sorted((outcome or {}).items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return [(OUTCOME_LABEL.get(k, k), VALUE_LABEL.get(v, v) if isinstance(v, str) else v) for k, v in items]
