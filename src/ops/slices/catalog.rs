//! What a slice can be made of: templates and plans (the `templates` and `plans` records).

pub use crate::records::plans::{default_plan, plan_choices, plan_limits, PlanChoice};
pub use crate::records::templates::{add_template, template_choices, TemplateChoice};
