{{/*
The four programs, in the order of deploy/fleet.conf: the values key (the
service's short name) of each. "gateway" is the only one without gRPC.
*/}}
{{- define "shop.programKeys" -}}
order product user gateway
{{- end }}

{{- define "shop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-shop-fleet, or the release name when it already holds the chart name. */}}
{{- define "shop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The program (executable, container and image name) of a key: order → order-svc. */}}
{{- define "shop.program" -}}
{{- if eq . "gateway" }}gateway{{ else }}{{ . }}-svc{{ end }}
{{- end }}

{{/* Name of a program's resources: dict "root" $ "key" "order" → <fullname>-order-svc. */}}
{{- define "shop.resourceName" -}}
{{- printf "%s-%s" (include "shop.fullname" .root | trunc 50 | trimSuffix "-") (include "shop.program" .key) }}
{{- end }}

{{- define "shop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: shop-fleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end }}

{{/* Selector labels of one program: dict "root" $ "key" "order". */}}
{{- define "shop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "shop.program" .key }}
{{- end }}

{{- define "shop.programLabels" -}}
{{ include "shop.labels" .root }}
{{ include "shop.selectorLabels" . }}
{{- end }}

{{/* A program's TLS Secret (ca.crt, tls.crt, tls.key): dict "root" $ "key" "order". */}}
{{- define "shop.tlsSecretName" -}}
{{- printf "%s-tls" (include "shop.resourceName" .) }}
{{- end }}

{{/* Where a program finds its TLS files (its TLS Secret, mounted read-only). */}}
{{- define "shop.tlsDir" -}}
/run/secrets/shop
{{- end }}

{{- define "shop.secretName" -}}
{{- default (printf "%s-secrets" (include "shop.fullname" .)) .Values.secret.name }}
{{- end }}

{{- define "shop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The gRPC target of a service for its callers: dict "root" $ "key" "product". */}}
{{- define "shop.grpcTarget" -}}
{{- printf "dns:///%s.%s.svc.%s:%v" (include "shop.resourceName" .) .root.Release.Namespace .root.Values.clusterDomain .root.Values.services.grpcPort }}
{{- end }}

{{/* The image of a program: dict "root" $ "key" "order". */}}
{{- define "shop.image" -}}
{{- $p := index .root.Values .key }}
{{- printf "%s%s:%s" .root.Values.image.registry $p.image.repository (default .root.Chart.AppVersion $p.image.tag | toString) }}
{{- end }}

{{/* A libpq keyword string with the password, for the chart-made Secret. */}}
{{- define "shop.databaseUrl" -}}
{{- $pg := index .root.Values.postgres .key }}
{{- $pw := index .root.Values.secret.values.postgresPasswords .key | required (printf "secret.values.postgresPasswords.%s is required when secret.create is true" .key) }}
{{- $q := dict }}
{{- range $k, $v := dict "host" $pg.host "port" ($pg.port | toString) "dbname" $pg.database "user" $pg.user "password" $pw "sslmode" $pg.sslmode "sslrootcert" $pg.sslrootcert }}
{{- $_ := set $q $k (printf "'%s'" ($v | toString | replace "\\" "\\\\" | replace "'" "\\'")) }}
{{- end }}
{{- printf "host=%s port=%s dbname=%s user=%s password=%s sslmode=%s" $q.host $q.port $q.dbname $q.user $q.password $q.sslmode }}
{{- if $pg.sslrootcert }} sslrootcert={{ $q.sslrootcert }}{{ end }}
{{- end }}
