//! The schemas Tenure serves (RFC 7643): User with the Enterprise User
//! extension and Tenure's lifecycle extension, and Group; their attribute
//! characteristics, as served from `/Schemas` and honoured by the rest of the
//! crate (mutability on writes, `returned` on reads, `caseExact` in filters
//! and value matching, `required` and types on validation).
//!
//! Attribute paths (`name.givenName`, `emails`, a schema URN then `:` then
//! the attribute) are resolved here, case-insensitively as RFC 7644 §3.10
//! says. The common attributes (`id`, `externalId`, `meta`) are described by
//! [`common`]; they are not part of any schema's `attributes` in `/Schemas`
//! (RFC 7643 §3.1).

use serde_json::{Value, json};
use std::sync::LazyLock;

/// The core User schema URN.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The Enterprise User extension URN.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Tenure's lifecycle extension URN.
pub const TENURE: &str = "urn:ietf:params:scim:schemas:extension:tenure:2.0:User";
/// The Group schema URN.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// Text.
    String,
    /// `true` or `false`.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An xsd:dateTime.
    DateTime,
    /// Base64 data.
    Binary,
    /// A URI.
    Reference,
    /// An object of sub-attributes.
    Complex,
}

impl AttrType {
    /// The name in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::DateTime => "dateTime",
            Self::Binary => "binary",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

/// Whether and how a client may change an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Only the server sets it; client values are ignored.
    ReadOnly,
    /// Clients read and write it.
    ReadWrite,
    /// Set once (on create or when empty), then never changed.
    Immutable,
    /// Written, never returned (a password).
    WriteOnly,
}

impl Mutability {
    /// The name in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnly",
            Self::ReadWrite => "readWrite",
            Self::Immutable => "immutable",
            Self::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always, even when `attributes` leaves it out.
    Always,
    /// Never.
    Never,
    /// Unless `attributes` or `excludedAttributes` say otherwise.
    Default,
    /// Only when asked for by `attributes`.
    Request,
}

impl Returned {
    /// The name in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Never => "never",
            Self::Default => "default",
            Self::Request => "request",
        }
    }
}

/// How unique an attribute's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No constraint.
    None,
    /// Unique within this service provider.
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// The name in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Server => "server",
            Self::Global => "global",
        }
    }
}

/// One attribute's definition.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Its name, in canonical case.
    pub name: &'static str,
    /// Its type.
    pub kind: AttrType,
    /// Whether it holds a list.
    pub multi_valued: bool,
    /// Whether a resource must have it.
    pub required: bool,
    /// Whether string comparisons respect case.
    pub case_exact: bool,
    /// Who may change it.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// How unique its values are.
    pub uniqueness: Uniqueness,
    /// Sub-attributes of a complex attribute.
    pub sub_attributes: Vec<Attribute>,
    /// Suggested values (not enforced).
    pub canonical_values: Vec<&'static str>,
    /// For references: what they point to.
    pub reference_types: Vec<&'static str>,
    /// What it means.
    pub description: &'static str,
}

impl Attribute {
    fn new(name: &'static str, kind: AttrType, description: &'static str) -> Self {
        Self {
            name,
            kind,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            sub_attributes: Vec::new(),
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            description,
        }
    }
    fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::String, description)
    }
    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    fn subs(mut self, subs: Vec<Attribute>) -> Self {
        self.sub_attributes = subs;
        self
    }
    fn canonical(mut self, values: &[&'static str]) -> Self {
        self.canonical_values = values.to_vec();
        self
    }
    fn refs(mut self, types: &[&'static str]) -> Self {
        self.reference_types = types.to_vec();
        self
    }

    /// A sub-attribute by name (case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The definition as served from `/Schemas`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability.as_str(),
            "returned": self.returned.as_str(),
            "uniqueness": self.uniqueness.as_str(),
        });
        if let Some(o) = v.as_object_mut() {
            if !self.sub_attributes.is_empty() {
                o.insert(
                    "subAttributes".into(),
                    Value::Array(self.sub_attributes.iter().map(Attribute::to_json).collect()),
                );
            }
            if !self.canonical_values.is_empty() {
                o.insert("canonicalValues".into(), json!(self.canonical_values));
            }
            if !self.reference_types.is_empty() {
                o.insert("referenceTypes".into(), json!(self.reference_types));
            }
        }
        v
    }
}

/// A schema: an id (URN) and its attributes.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The URN.
    pub id: &'static str,
    /// Its name.
    pub name: &'static str,
    /// What it describes.
    pub description: &'static str,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

impl Schema {
    /// An attribute by name (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The schema resource served from `/Schemas/{id}`.
    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(Attribute::to_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{}", self.id) },
        })
    }
}

/// `value`, `display`, `type`, `primary`: the usual sub-attributes of a multi-valued attribute.
fn multi_subs(value_kind: AttrType, types: &[&'static str]) -> Vec<Attribute> {
    vec![
        Attribute::new("value", value_kind, "The value."),
        Attribute::string("display", "A human-readable name."),
        Attribute::string("type", "A label for the value's function.").canonical(types),
        Attribute::new(
            "primary",
            AttrType::Boolean,
            "Whether this is the primary value.",
        ),
    ]
}

fn user() -> Schema {
    use AttrType::Boolean;
    let name = Attribute::new(
        "name",
        AttrType::Complex,
        "The components of the user's real name.",
    )
    .subs(vec![
        Attribute::string("formatted", "The full name."),
        Attribute::string("familyName", "The family name."),
        Attribute::string("givenName", "The given name."),
        Attribute::string("middleName", "The middle name."),
        Attribute::string("honorificPrefix", "The honorific prefix."),
        Attribute::string("honorificSuffix", "The honorific suffix."),
    ]);
    let mut address_subs = vec![
        Attribute::string("formatted", "The full mailing address."),
        Attribute::string("streetAddress", "The street address."),
        Attribute::string("locality", "The city or locality."),
        Attribute::string("region", "The state or region."),
        Attribute::string("postalCode", "The postal code."),
        Attribute::string("country", "The country."),
        Attribute::string("type", "work, home or other.").canonical(&["work", "home", "other"]),
    ];
    address_subs.push(Attribute::new(
        "primary",
        Boolean,
        "Whether this is the primary address.",
    ));
    Schema {
        id: USER,
        name: "User",
        description: "User Account",
        attributes: vec![
            Attribute::string(
                "userName",
                "Unique identifier for the user, used to sign in.",
            )
            .required()
            .unique(Uniqueness::Server),
            name,
            Attribute::string("displayName", "The name displayed to end users."),
            Attribute::string("nickName", "The casual name."),
            Attribute::new(
                "profileUrl",
                AttrType::Reference,
                "The user's online profile.",
            )
            .refs(&["external"]),
            Attribute::string("title", "The user's title."),
            Attribute::string("userType", "The relationship to the organisation."),
            Attribute::string("preferredLanguage", "Preferred language."),
            Attribute::string("locale", "Default location for localisation."),
            Attribute::string("timezone", "Time zone, in the Olson database format."),
            Attribute::new(
                "active",
                AttrType::Boolean,
                "Whether the user may work (false: deactivated).",
            ),
            Attribute::string("password", "The cleartext password (never returned).")
                .mutability(Mutability::WriteOnly)
                .returned(Returned::Never),
            Attribute::new("emails", AttrType::Complex, "E-mail addresses.")
                .multi()
                .subs(multi_subs(AttrType::String, &["work", "home", "other"])),
            Attribute::new("phoneNumbers", AttrType::Complex, "Phone numbers.")
                .multi()
                .subs(multi_subs(
                    AttrType::String,
                    &["work", "home", "mobile", "fax", "pager", "other"],
                )),
            Attribute::new("ims", AttrType::Complex, "Instant messaging addresses.")
                .multi()
                .subs(multi_subs(AttrType::String, &[])),
            Attribute::new("photos", AttrType::Complex, "URLs of images of the user.")
                .multi()
                .subs(multi_subs(AttrType::Reference, &["photo", "thumbnail"])),
            Attribute::new(
                "addresses",
                AttrType::Complex,
                "Physical mailing addresses.",
            )
            .multi()
            .subs(address_subs),
            Attribute::new(
                "groups",
                AttrType::Complex,
                "The groups the user belongs to (set through /Groups).",
            )
            .multi()
            .mutability(Mutability::ReadOnly)
            .subs(vec![
                Attribute::string("value", "The group's id.").mutability(Mutability::ReadOnly),
                Attribute::new("$ref", AttrType::Reference, "The group's URI.")
                    .mutability(Mutability::ReadOnly)
                    .refs(&["Group"]),
                Attribute::string("display", "The group's displayName.")
                    .mutability(Mutability::ReadOnly),
                Attribute::string("type", "direct or indirect.")
                    .mutability(Mutability::ReadOnly)
                    .canonical(&["direct", "indirect"]),
            ]),
            Attribute::new(
                "entitlements",
                AttrType::Complex,
                "Entitlements of the user.",
            )
            .multi()
            .subs(multi_subs(AttrType::String, &[])),
            Attribute::new("roles", AttrType::Complex, "Roles of the user.")
                .multi()
                .subs(multi_subs(AttrType::String, &[])),
            Attribute::new(
                "x509Certificates",
                AttrType::Complex,
                "Certificates of the user.",
            )
            .multi()
            .subs(multi_subs(AttrType::Binary, &[])),
        ],
    }
}

fn enterprise() -> Schema {
    Schema {
        id: ENTERPRISE,
        name: "EnterpriseUser",
        description: "Enterprise User",
        attributes: vec![
            Attribute::string("employeeNumber", "Identifier assigned by the organisation."),
            Attribute::string("costCenter", "Cost center."),
            Attribute::string("organization", "Organisation."),
            Attribute::string("division", "Division."),
            Attribute::string("department", "Department."),
            Attribute::new("manager", AttrType::Complex, "The user's manager.").subs(vec![
                Attribute::string("value", "The manager's id."),
                Attribute::new("$ref", AttrType::Reference, "The manager's URI.").refs(&["User"]),
                Attribute::string("displayName", "The manager's displayName.")
                    .mutability(Mutability::ReadOnly),
            ]),
        ],
    }
}

fn tenure() -> Schema {
    Schema {
        id: TENURE,
        name: "TenureUser",
        description: "Tenure lifecycle attributes",
        attributes: vec![
            Attribute::string(
                "employmentType",
                "The working relationship (employee, contractor, vendor, temp, service_owner, or a value the source maps).",
            ),
            Attribute::string(
                "startDate",
                "First working day, YYYY-MM-DD (an RFC 3339 date-time is read by its date): access starts on it.",
            ),
            Attribute::string(
                "endDate",
                "Termination or contract end, YYYY-MM-DD (or an RFC 3339 date-time): the person is a leaver from this day on.",
            ),
        ],
    }
}

fn group() -> Schema {
    Schema {
        id: GROUP,
        name: "Group",
        description: "Group",
        attributes: vec![
            Attribute::string("displayName", "A human-readable name for the group.").required(),
            Attribute::new("members", AttrType::Complex, "The members of the group.")
                .multi()
                .subs(vec![
                    Attribute::string("value", "The member's id.")
                        .mutability(Mutability::Immutable),
                    Attribute::new("$ref", AttrType::Reference, "The member's URI.")
                        .mutability(Mutability::Immutable)
                        .refs(&["User", "Group"]),
                    Attribute::string("display", "The member's displayName.")
                        .mutability(Mutability::ReadOnly),
                    Attribute::string("type", "User or Group.")
                        .mutability(Mutability::Immutable)
                        .canonical(&["User", "Group"]),
                ]),
        ],
    }
}

/// Every schema served, User's first.
pub static SCHEMAS: LazyLock<Vec<Schema>> =
    LazyLock::new(|| vec![user(), enterprise(), tenure(), group()]);

/// The common attributes `id`, `externalId` and `meta` (RFC 7643 §3.1).
pub static COMMON: LazyLock<Vec<Attribute>> = LazyLock::new(|| {
    vec![
        Attribute::string("id", "The service provider's identifier.")
            .exact()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always)
            .unique(Uniqueness::Server),
        Attribute::string("externalId", "The provisioning client's identifier.").exact(),
        Attribute::new("meta", AttrType::Complex, "Resource metadata.")
            .mutability(Mutability::ReadOnly)
            .subs(vec![
                Attribute::string("resourceType", "")
                    .exact()
                    .mutability(Mutability::ReadOnly),
                Attribute::new("created", AttrType::DateTime, "").mutability(Mutability::ReadOnly),
                Attribute::new("lastModified", AttrType::DateTime, "")
                    .mutability(Mutability::ReadOnly),
                Attribute::string("location", "")
                    .exact()
                    .mutability(Mutability::ReadOnly),
                Attribute::string("version", "")
                    .exact()
                    .mutability(Mutability::ReadOnly),
            ]),
    ]
});

/// A schema by URN (case-insensitive).
pub fn schema(id: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.id.eq_ignore_ascii_case(id))
}

/// The common attributes.
pub fn common() -> &'static [Attribute] {
    &COMMON
}

/// The kinds of resource served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl ResourceKind {
    /// The resource type's name (`User`, `Group`).
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// The endpoint (`/Users`).
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "/Users",
            Self::Group => "/Groups",
        }
    }

    /// The core schema.
    pub fn core(self) -> &'static Schema {
        match self {
            Self::User => &SCHEMAS[0],
            Self::Group => &SCHEMAS[3],
        }
    }

    /// The extension schemas this resource type may carry.
    pub fn extensions(self) -> &'static [Schema] {
        match self {
            Self::User => &SCHEMAS[1..3],
            Self::Group => &[],
        }
    }

    /// The `/ResourceTypes/{name}` resource.
    pub fn to_json(self, base: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name(),
            "name": self.name(),
            "endpoint": self.endpoint(),
            "description": self.name(),
            "schema": self.core().id,
            "schemaExtensions": self.extensions().iter()
                .map(|s| json!({"schema": s.id, "required": false}))
                .collect::<Vec<_>>(),
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", self.name())},
        })
    }
}

/// Where an attribute path leads: the schema (`None` for the common
/// attributes), the attribute, and the sub-attribute if one is named.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The schema whose attribute it is (`None`: a common attribute).
    pub schema: Option<&'static Schema>,
    /// The attribute.
    pub attr: &'static Attribute,
    /// The sub-attribute.
    pub sub: Option<&'static Attribute>,
}

impl Resolved {
    /// The attribute the path finally names.
    pub fn leaf(&self) -> &'static Attribute {
        self.sub.unwrap_or(self.attr)
    }

    /// Whether it lives in an extension (under the extension's URN in the resource).
    pub fn extension(&self) -> Option<&'static str> {
        match self.schema {
            Some(s) if s.id != USER && s.id != GROUP => Some(s.id),
            _ => None,
        }
    }
}

/// Resolves `[URN:]attr[.sub]` for a resource kind; `None` if no such attribute.
pub fn resolve(kind: ResourceKind, path: &str) -> Option<Resolved> {
    let (schema, rest): (Option<&'static Schema>, &str) = {
        let mut found = None;
        for s in std::iter::once(kind.core()).chain(kind.extensions()) {
            if path.len() > s.id.len()
                && path[..s.id.len()].eq_ignore_ascii_case(s.id)
                && path.as_bytes()[s.id.len()] == b':'
            {
                found = Some((Some(s), &path[s.id.len() + 1..]));
            }
        }
        match found {
            Some(f) => f,
            None if path.to_ascii_lowercase().starts_with("urn:") => return None,
            None => (None, path),
        }
    };
    let (name, sub) = match rest.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let (schema, attr) = match schema {
        Some(s) => (Some(s), s.attribute(name)?),
        None => match common().iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
            Some(a) => (None, a),
            None => (Some(kind.core()), kind.core().attribute(name)?),
        },
    };
    let sub = match sub {
        Some(s) => Some(attr.sub(s)?),
        None => None,
    };
    Some(Resolved { schema, attr, sub })
}
